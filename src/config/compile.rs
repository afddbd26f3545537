//! `compile()`: the one place that validates a `RawConfig` and derives the immutable `Compiled`
//! table the workers read. Names become dense ids, addresses are resolved (this runs on the
//! control thread, never on a worker), matchers are built, and every problem becomes a
//! `ConfigError` naming file, line, column and field. Nothing downstream re-validates.
//!
//! This file validates the top-level sections (server, limits, timeouts, upstreams, admin) and
//! dispatches the rest: `listeners` (addresses, TLS, HTTPS redirects), `routes`, `policies`
//! (each policy kind compiles in its own block), `defaults`, `telemetry`, `abuse`, `paths`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use super::errors::{field_at, positive, ConfigError, Diag};
use super::model::{Admin, Compiled, Listener, Runtime, Timeouts};
use super::raw::{RawConfig, RawLimits, RawServer, RawTimeouts};
use super::routes::{compile_routes, route_table, RouteContext};
use super::units::{dur, RawSize};
use crate::http1;

/// Parses TOML text into a `RawConfig`, turning serde/TOML errors into positioned errors.
pub fn parse(src: &str, file: &Path) -> Result<RawConfig, Vec<ConfigError>> {
    toml::from_str::<RawConfig>(src).map_err(|e| {
        let start = e.span().map(|s| s.start).unwrap_or(0);
        vec![ConfigError::at(
            file,
            src,
            start,
            field_at(src, start),
            e.message().trim(),
        )]
    })
}

pub(super) const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// Validates and derives with a fresh `Runtime` (for `check` and tests: no state carried over).
pub fn compile(
    raw: RawConfig,
    src: &str,
    file: &Path,
    generation: u64,
) -> Result<Compiled, Vec<ConfigError>> {
    compile_with(raw, src, file, generation, &Runtime::default())
}

/// Validates and derives. Either a complete `Compiled` or every error found. Rate limiters and
/// JWKS fetchers come from `rt`, so unchanged ones keep their state across reloads.
pub fn compile_with(
    raw: RawConfig,
    src: &str,
    file: &Path,
    generation: u64,
    rt: &Runtime,
) -> Result<Compiled, Vec<ConfigError>> {
    let mut errs = Diag::new(file, src);
    check_version(&raw, &mut errs);
    let workers = workers(&raw.server, &mut errs);
    let drain_timeout = dur(&raw.server.drain_timeout, Duration::from_secs(30));
    let run_as = run_as(&raw.server, &mut errs);
    let listeners = super::listeners::compile_listeners(&raw, file, &mut errs);
    let limits = header_limits(&raw.limits, &mut errs);
    let default_max_body = raw
        .limits
        .max_body_bytes
        .as_ref()
        .map(|s| s.get_ref().0)
        .unwrap_or(DEFAULT_MAX_BODY);
    let timeouts = compile_timeouts(&raw.timeouts, &raw.limits, &mut errs);
    let conn_limits = super::abuse::conn_limits(&raw.limits, &mut errs);
    let dns = super::dns::compile_dns(&raw.dns, file, &mut errs);
    let redis = raw.redis.as_ref().and_then(|r| {
        let env = |name: &str| std::env::var(name).ok();
        crate::redis::compile(r, &env, file.parent().unwrap_or(Path::new(".")), &mut errs)
            .map(|s| rt.redis.get_or_create(s))
    });
    let (upstreams, upstream_ids) =
        super::upstreams::compile_upstreams(&raw, file, &timeouts, rt, &dns, &mut errs);
    let admin = compile_admin(&raw, &listeners, &mut errs);
    let telemetry = super::telemetry::compile_telemetry(
        &raw,
        file.parent().unwrap_or(Path::new(".")),
        &mut errs,
    );
    let super::policies::CompiledPolicies {
        mut policies,
        ids: policy_ids,
        live_limiters,
    } = super::policies::compile_policies(&raw, file, rt, redis.as_ref(), &upstream_ids, &mut errs);
    policies.limiter_identities = live_limiters;

    let mut defaults_used = vec![false; raw.defaults.len()];
    let cx = RouteContext {
        upstream_ids: &upstream_ids,
        upstreams: &upstreams,
        default_max_body,
        policies: &policies,
        policy_ids: &policy_ids,
    };
    let (mut routes, mut specs) = compile_routes(&raw, &cx, &mut defaults_used, &mut errs);
    let mut origins: Vec<super::openapi::RouteOrigin> = routes
        .iter()
        .map(|r| super::openapi::RouteOrigin::Toml(r.id.0 as usize))
        .collect();
    let openapi = super::openapi::import(
        &super::openapi::ImportContext {
            raw: &raw,
            file,
            upstream_ids: &upstream_ids,
            policy_ids: &policy_ids,
            default_max_body,
        },
        &mut policies,
        (&mut routes, &mut specs, &mut origins),
        &mut defaults_used,
        &mut errs,
    );
    super::openapi::unique_names(&raw, &routes, &origins, &mut errs);
    if let Some(a) = &telemetry.access_log {
        for name in &a.redact_query {
            if !policies.secret_query.contains(name) {
                policies.secret_query.push(name.clone());
            }
        }
    }
    if errs.is_empty() {
        super::defaults::unused_defaults(&raw, &defaults_used, &mut errs);
    }
    let paths = super::paths::compile_paths(&raw.paths, &mut errs);
    let usage = super::policies::compile_usage(&raw, &mut errs);
    let cache_max_bytes = raw
        .cache
        .max_bytes
        .as_ref()
        .map_or(crate::cache::settings::DEFAULT_MAX_BYTES, |m| m.get_ref().0);
    let table = if errs.is_empty() {
        route_table(&raw, &specs, &origins, &mut errs)
    } else {
        None
    };
    if let Some(t) = &table {
        super::routes::local_pages_reachable(&raw, &routes, &specs, t, &paths, &origins, &mut errs);
    }

    match table {
        Some(table) if errs.is_empty() => Ok(Compiled {
            generation,
            source: file.to_path_buf(),
            workers,
            drain_timeout,
            listeners,
            limits,
            timeouts,
            upstreams,
            routes,
            table,
            admin,
            telemetry,
            policies,
            content_hash: content_hash(src),
            paths,
            conn_limits,
            dns,
            redis,
            source_text: std::sync::Arc::from(src),
            source_files: Default::default(),
            run_as,
            usage,
            cache: rt.cache.clone(),
            cache_max_bytes,
            openapi,
        }),
        _ => Err(errs.list),
    }
}

/// `server.user` / `server.group`: resolved now, so a missing account fails `check`, startup
/// and reload alike, with the line that names it.
fn run_as(s: &RawServer, errs: &mut Diag) -> Option<crate::privileges::RunAs> {
    let Some(user) = &s.user else {
        if let Some(g) = &s.group {
            errs.at(g.span(), "server.group", "`group` needs `user` as well");
        }
        return None;
    };
    let group = s.group.as_ref();
    match crate::privileges::resolve(user.get_ref(), group.map(|g| g.get_ref().as_str())) {
        Ok(r) if r.uid == 0 => {
            errs.at(
                user.span(),
                "server.user",
                "the account to drop to must not be root (leave `user` out to keep the current one)",
            );
            None
        }
        Ok(r) => Some(r),
        Err(e) => {
            let (span, field) = match group {
                Some(g) if e.contains("group") => (g.span(), "server.group"),
                _ => (user.span(), "server.user"),
            };
            errs.at(span, field, e);
            None
        }
    }
}

/// `version`, when given, must be 1.
fn check_version(raw: &RawConfig, errs: &mut Diag) {
    if let Some(v) = &raw.version {
        if *v.get_ref() != 1 {
            errs.at(
                v.span(),
                "version",
                format!(
                    "unsupported config version {} (this build reads 1)",
                    v.get_ref()
                ),
            );
        }
    }
}

/// `server.workers`: 0 (one per core) up to 1024.
fn workers(server: &RawServer, errs: &mut Diag) -> usize {
    match &server.workers {
        None => 0,
        Some(w) => match usize::try_from(*w.get_ref()) {
            Ok(n) if n <= 1024 => n,
            _ => {
                errs.at(
                    w.span(),
                    "server.workers",
                    "must be 0 (one per core) or a count up to 1024",
                );
                0
            }
        },
    }
}

/// The request-head limits of `[limits]`.
fn header_limits(l: &RawLimits, errs: &mut Diag) -> http1::Limits {
    http1::Limits {
        max_header_bytes: bounded_size(
            errs,
            &l.max_header_bytes,
            "limits.max_header_bytes",
            16 * 1024,
            1024..=1 << 20,
        ) as usize,
        max_headers: match &l.max_headers {
            None => 100,
            Some(n) => match usize::try_from(*n.get_ref()) {
                Ok(v) if (1..=1000).contains(&v) => v,
                _ => {
                    errs.at(n.span(), "limits.max_headers", "must be between 1 and 1000");
                    100
                }
            },
        },
        max_uri_bytes: bounded_size(
            errs,
            &l.max_uri_bytes,
            "limits.max_uri_bytes",
            8 * 1024,
            64..=1 << 20,
        ) as usize,
    }
}

/// `[timeouts]`, plus the data-rate and lingering settings of `[limits]`.
fn compile_timeouts(t: &RawTimeouts, l: &RawLimits, errs: &mut Diag) -> Timeouts {
    let secs = Duration::from_secs;
    Timeouts {
        client_header: positive(errs, &t.client_header, "timeouts.client_header", secs(10)),
        client_body: positive(errs, &t.client_body, "timeouts.client_body", secs(30)),
        keepalive: positive(errs, &t.keepalive, "timeouts.keepalive", secs(60)),
        upstream_connect: positive(
            errs,
            &t.upstream_connect,
            "timeouts.upstream_connect",
            secs(3),
        ),
        upstream_response: positive(
            errs,
            &t.upstream_response,
            "timeouts.upstream_response",
            secs(30),
        ),
        upstream_idle: positive(errs, &t.upstream_idle, "timeouts.upstream_idle", secs(60)),
        client_body_total: positive(
            errs,
            &t.client_body_total,
            "timeouts.client_body_total",
            secs(300),
        ),
        min_data_rate: super::abuse::min_data_rate(l, errs),
        tunnel_idle: positive(errs, &t.tunnel_idle, "timeouts.tunnel_idle", secs(600)),
        lingering_close: dur(&t.lingering_close, secs(2)),
        lingering_bytes: bounded_size(
            errs,
            &l.lingering_bytes,
            "limits.lingering_bytes",
            1 << 20,
            0..=1 << 30,
        ),
    }
}

/// Default admin address (loopback only unless configured otherwise).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

fn compile_admin(raw: &RawConfig, listeners: &[Listener], errs: &mut Diag) -> Option<Admin> {
    let a = &raw.admin;
    if a.enabled == Some(false) {
        return None;
    }
    let (text, span) = match &a.address {
        Some(s) => (s.get_ref().as_str(), s.span()),
        None => (DEFAULT_ADMIN, 0..0),
    };
    let addr = match text.parse::<SocketAddr>() {
        Ok(addr) => addr,
        Err(_) => {
            errs.at(
                span,
                "admin.address",
                format!("bad admin address {text:?}: expected IP:PORT like \"127.0.0.1:9901\""),
            );
            return None;
        }
    };
    // The same port on the same address, or on a wildcard address (0.0.0.0, [::]) that
    // covers the other: the second bind would fail at startup.
    // (`[::]` takes IPv4 too, as Linux binds it dual-stack by default.)
    let covers = |wild: std::net::IpAddr, other: std::net::IpAddr| {
        wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    let overlaps = |l: &SocketAddr| {
        l.port() == addr.port()
            && (l.ip() == addr.ip() || covers(l.ip(), addr.ip()) || covers(addr.ip(), l.ip()))
    };
    if let Some(l) = listeners.iter().find(|l| overlaps(&l.addr)) {
        errs.at(
            span,
            "admin.address",
            format!(
                "the admin listener cannot share {addr} with listener {:?}",
                l.name
            ),
        );
        return None;
    }
    let token = match &a.token {
        Some(t) if t.get_ref().len() < 16 => {
            errs.at(
                t.span(),
                "admin.token",
                "token must be at least 16 characters",
            );
            None
        }
        // A header value loses leading and trailing blanks on the way in, and cannot hold
        // control characters: such a token could never be presented.
        Some(t)
            if t.get_ref().trim() != t.get_ref() || t.get_ref().chars().any(char::is_control) =>
        {
            errs.at(
                t.span(),
                "admin.token",
                "token must not start or end with whitespace or hold control characters (no request could present it)",
            );
            None
        }
        Some(t) => Some(t.get_ref().clone()),
        None => None,
    };
    let mut hosts = Vec::new();
    for h in a.hosts.iter().flatten() {
        let name = h.get_ref().to_ascii_lowercase();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if valid {
            hosts.push(name);
        } else {
            errs.at(
                h.span(),
                "admin.hosts",
                format!(
                    "{:?} is not a host name (letters, digits, '.', '-', '_'; no port)",
                    h.get_ref()
                ),
            );
        }
    }
    Some(Admin { addr, token, hosts })
}

/// Keyed digest of the config text (HMAC-SHA256 under a per-process random key), as 16 hex
/// digits. Equal for equal files within one process lifetime (change detection); an unkeyed
/// hash would let whoever reads `/config` confirm guesses of secrets written in the file.
fn content_hash(src: &str) -> String {
    crate::keyed_hash::hex_prefix(src.as_bytes(), 8)
}

fn bounded_size(
    errs: &mut Diag,
    v: &Option<Spanned<RawSize>>,
    field: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    match v {
        None => default,
        Some(s) if !range.contains(&s.get_ref().0) => {
            errs.at(
                s.span(),
                field,
                format!(
                    "must be between {} and {} bytes",
                    range.start(),
                    range.end()
                ),
            );
            default
        }
        Some(s) => s.get_ref().0,
    }
}

/// Reads, parses and compiles a config file with a fresh `Runtime`.
pub fn load(path: &Path, generation: u64) -> Result<Compiled, Vec<ConfigError>> {
    load_with(path, generation, &Runtime::default())
}

/// Reads, parses and compiles a config file, drawing on `rt` for state kept across reloads.
pub fn load_with(path: &Path, generation: u64, rt: &Runtime) -> Result<Compiled, Vec<ConfigError>> {
    let src = crate::bounded_file::read_to_string(path, crate::bounded_file::MAX_CONFIG_BYTES);
    let src = src.map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            field: String::new(),
            message: format!("cannot read config: {e}"),
        }]
    })?;
    load_text(path, &src, generation, rt)
}

/// Parses and compiles config text that came from `path`, reading the files it names from
/// the disk.
pub fn load_text(
    path: &Path,
    src: &str,
    generation: u64,
    rt: &Runtime,
) -> Result<Compiled, Vec<ConfigError>> {
    recompile(path, src, None, generation, rt)
}

/// Parses and compiles config text that came from `path`; the files it names are read from
/// `files` where it holds them (a re-compile of the serving generation: its own text and
/// files), from the disk otherwise. The result keeps the files it was compiled from.
pub fn recompile(
    path: &Path,
    src: &str,
    files: Option<std::sync::Arc<crate::bounded_file::FileSet>>,
    generation: u64,
    rt: &Runtime,
) -> Result<Compiled, Vec<ConfigError>> {
    let (compiled, read) = crate::bounded_file::capture(files, || {
        let raw = parse(src, path)?;
        compile_with(raw, src, path, generation, rt)
    });
    let mut cfg = compiled?;
    cfg.source_files = std::sync::Arc::new(read);
    warn_unverified(&cfg);
    Ok(cfg)
}

/// Every load of a config that turns upstream certificate checks off says so.
fn warn_unverified(cfg: &Compiled) {
    for u in &cfg.upstreams {
        if u.tls.as_ref().is_some_and(|t| !t.verify) {
            crate::log::warn(&format!(
                "upstream {}: TLS certificate verification is OFF (tls.verify = false): \
                 any server can impersonate it",
                u.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(src: &str) -> Result<Compiled, Vec<ConfigError>> {
        let p = Path::new("test.toml");
        let raw = parse(src, p)?;
        compile(raw, src, p, 1)
    }

    fn first_err(src: &str) -> String {
        match check(src) {
            Ok(_) => panic!("expected an error"),
            Err(e) => e[0].to_string(),
        }
    }

    const BASE: &str = "[[listeners]]\naddress = \"127.0.0.1:0\"\n";

    #[test]
    fn minimal_config_compiles() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\npath = \"/\"\necho = {{}}\n");
        let c = check(&src).unwrap();
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.timeouts.client_header, Duration::from_secs(10));
    }

    #[test]
    fn admin_address_and_token_that_could_never_work_are_errors() {
        let route = "[[routes]]\nname = \"a\"\npath = \"/\"\necho = {}\n";
        let with = |listener: &str, admin: &str| {
            format!("[[listeners]]\naddress = \"{listener}\"\n[admin]\n{admin}\n{route}")
        };
        // A wildcard listener covers the admin address on its port, and the other way round.
        for (listener, admin) in [
            ("0.0.0.0:41083", "127.0.0.1:41083"),
            ("127.0.0.1:41083", "0.0.0.0:41083"),
            ("[::]:41083", "127.0.0.1:41083"),
        ] {
            let e = first_err(&with(listener, &format!("address = \"{admin}\"")));
            assert!(
                e.contains("admin.address") && e.contains("cannot share"),
                "{e}"
            );
        }
        // Other ports, or an IPv4 wildcard and an IPv6 address, do not meet.
        for (listener, admin) in [
            ("0.0.0.0:41083", "127.0.0.1:41084"),
            ("0.0.0.0:41083", "[::1]:41083"),
        ] {
            assert!(check(&with(listener, &format!("address = \"{admin}\""))).is_ok());
        }
        // Header values lose their outer blanks: such a token could never be presented.
        for token in [
            "0123456789abcdef-secret ",
            " 0123456789abcdef",
            "0123456789abcdef\\u0007",
        ] {
            let e = first_err(&with("127.0.0.1:0", &format!("token = \"{token}\"")));
            assert!(
                e.contains("admin.token") && e.contains("whitespace"),
                "{token:?}: {e}"
            );
        }
        assert!(check(&with("127.0.0.1:0", "token = \"0123456789abcdef-secret\"")).is_ok());
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let src = format!("{BASE}[[routes]]\nname = \"a\"\npath = \"/\"\nechoo = {{}}\n");
        let e = first_err(&src);
        assert!(e.starts_with("test.toml:6:1:"), "{e}");
        assert!(e.contains("echoo"), "{e}");
    }

    #[test]
    fn unknown_upstream_is_named() {
        let src = format!(
            "{BASE}[upstreams.users]\ntargets = [{{ address = \"127.0.0.1:9\" }}]\n\
             [[routes]]\nname = \"a\"\nprefix = \"/\"\nproxy = {{ upstream = \"userz\" }}\n"
        );
        let e = first_err(&src);
        assert!(e.contains("test.toml:8:"), "{e}");
        assert!(e.contains("routes[0].proxy.upstream"), "{e}");
        assert!(e.contains("userz") && e.contains("users"), "{e}");
    }

    #[test]
    fn duplicate_route_name() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n\
             [[routes]]\nname = \"a\"\npath = \"/y\"\necho = {{}}\n"
        );
        let e = first_err(&src);
        assert!(
            e.contains(":8:") && e.contains("duplicate route name"),
            "{e}"
        );
    }

    #[test]
    fn bad_duration_and_address() {
        let e = first_err(&format!("{BASE}[timeouts]\nkeepalive = \"10 parsecs\"\n"));
        assert!(e.contains(":4:") && e.contains("timeouts.keepalive"), "{e}");
        let e = first_err("[[listeners]]\naddress = \"nowhere\"\n");
        assert!(
            e.contains(":2:") && e.contains("listeners[0].address"),
            "{e}"
        );
    }

    #[test]
    fn conflicting_routes_are_an_error() {
        let src = format!(
            "{BASE}[[routes]]\nname = \"a\"\npath = \"/x\"\necho = {{}}\n\
             [[routes]]\nname = \"b\"\npath = \"/x\"\necho = {{}}\n"
        );
        let e = first_err(&src);
        assert!(e.contains("conflicts"), "{e}");
    }
}

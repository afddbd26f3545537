//! Scenario files (`loadtest/scenarios/NAME.toml`): the upstream's response, the gateway's
//! routes and the load shape. Parsed with serde (`deny_unknown_fields`, so a typo is an error)
//! and checked once here; everything downstream works on the validated [`Scenario`].
//!
//! Routes are written in ringway's terms (`path` exact or template, or `prefix`), optionally
//! `repeat`ed with `{i}` replaced by 0..repeat; the nginx config is derived from the same list.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::units::{parse_duration, parse_size};

use serde::Deserialize;

/// What a scenario measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// rwload against every target: throughput, latency, gateway CPU and RSS.
    #[default]
    Load,
    /// Many idle keep-alive connections: gateway RSS per connection.
    Idle,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    #[serde(default)]
    kind: Kind,
    #[serde(default)]
    upstream: RawUpstream,
    routes: Vec<RawRoute>,
    load: Option<RawLoad>,
    idle: Option<RawIdle>,
    #[serde(default)]
    ringway: RawRingway,
    tls: Option<RawTls>,
    http2: Option<RawHttp2>,
    #[serde(default)]
    nginx: RawNginx,
}

/// nginx-only additions, so nginx does the same work as ringway's extra config (a cache, gzip).
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawNginx {
    /// Lines added to the `http` block (`{dir}` = nginx's run directory).
    #[serde(default)]
    pub http: String,
    /// Lines added to every `location` block.
    #[serde(default)]
    pub location: String,
    /// Lines added to the `server` block, before the route locations (an internal location
    /// an `auth_request` subrequest goes to, for example).
    #[serde(default)]
    pub server: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp2 {
    streams: Option<usize>,
    cleartext: Option<bool>,
}

/// HTTP/2 load: h2load (nghttp2-client) instead of rwload, over TLS (ALPN `h2` only) or, with
/// `cleartext`, h2c with prior knowledge on a plain listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2 {
    /// Concurrent streams per connection (h2load `-m`).
    pub streams: usize,
    /// h2c with prior knowledge (no `[tls]`).
    pub cleartext: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    handshakes: Option<Handshakes>,
    version: Option<String>,
}

/// How the load uses TLS connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Handshakes {
    /// Keep-alive connections: the handshakes happen before the measured window.
    #[default]
    Keepalive,
    /// One request per connection, no session resumption: every request is a full handshake.
    Full,
    /// One request per connection with session resumption (TLS 1.3 tickets, or TLS 1.2
    /// tickets/session ids): every request after the first per connection slot is resumed.
    Resumed,
}

impl Handshakes {
    pub fn name(self) -> &'static str {
        match self {
            Handshakes::Keepalive => "keep-alive",
            Handshakes::Full => "full handshake per request",
            Handshakes::Resumed => "resumed handshake per request",
        }
    }
}

/// A scenario over TLS: both gateways serve the run's certificate (ECDSA P-256, made at run
/// time); `direct` is skipped (the upstream speaks plain HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls {
    pub handshakes: Handshakes,
    /// `Some("1.2")`/`Some("1.3")` restricts the client; `None` offers both.
    pub version: Option<&'static str>,
}

/// ringway-only additions: policies on every route, config appended, files written beside it.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRingway {
    #[serde(default)]
    policies: Vec<String>,
    config: Option<String>,
    #[serde(default)]
    files: std::collections::BTreeMap<String, String>,
    /// One ringway row per variant, each with its own TOML appended (see `RingwayExtra`).
    #[serde(default)]
    variants: Vec<RawVariant>,
    /// Start a private `redis-server` for the run; `{redis}` in configs is its address.
    #[serde(default)]
    redis: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    name: String,
    config: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    body_size: Option<String>,
    /// The body is a JSON document of about `body_size` bytes (`rwload upstream --json`).
    #[serde(default)]
    json: bool,
    /// The body is exactly this text, as JSON (`rwload upstream --body-text`).
    body_text: Option<String>,
    delay: Option<String>,
    keepalive: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Option<String>,
    prefix: Option<String>,
    repeat: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLoad {
    method: Option<String>,
    body_size: Option<String>,
    /// The request body is a JSON document of about `body_size` bytes (`rwload --body-json`).
    #[serde(default)]
    json: bool,
    connections: Option<usize>,
    paths: Vec<String>,
    duration: Option<String>,
    warmup: Option<String>,
    rate: Option<f64>,
    timeout: Option<String>,
    #[serde(default)]
    headers: Vec<String>,
    /// `"N"` or `"N:S"`: each request's `{k}` in the path is one of N keys drawn from a Zipf
    /// distribution with exponent S (`rwload --zipf`).
    zipf: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdle {
    connections: Option<usize>,
    path: Option<String>,
    settle: Option<String>,
}

/// How the gateway matches a route; `{name}` segments make a `Path` a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch {
    /// Exact path or template (`/svc1/items/{id}`).
    Path(String),
    /// Segment-aware prefix (`/api` matches `/api`, `/api/x`, not `/apix`).
    Prefix(String),
}

/// The load shape of a `load` scenario.
#[derive(Debug, Clone)]
pub struct Load {
    pub method: String,
    pub body_size: usize,
    /// `rwload --body-json`: the body is a JSON document (with its content type).
    pub json: bool,
    pub connections: usize,
    /// One rwload instance per path (rwload takes a single URL), connections split evenly.
    pub paths: Vec<String>,
    pub duration: Duration,
    pub warmup: Duration,
    /// Open loop at this total rate; `None` is closed loop.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Extra request headers (`Name: value`), sent to every target.
    pub headers: Vec<String>,
    /// `rwload --zipf` (`N` or `N:S`).
    pub zipf: Option<String>,
    /// The scenario's `[tls]` (copied here so the load knows how to connect).
    pub tls: Option<Tls>,
    /// The scenario's `[http2]`: load with h2load instead of rwload.
    pub http2: Option<Http2>,
}

/// What only the ringway target gets: route policies and the config (and files) they need.
#[derive(Debug, Clone, Default)]
pub struct RingwayExtra {
    /// Policy names listed on every generated route.
    pub policies: Vec<String>,
    /// TOML appended to the generated config (`{dir}` = the directory it is written to).
    pub config: String,
    /// Files written into that directory first (name → content).
    pub files: Vec<(String, String)>,
    /// `(name, TOML)`: ringway runs once per variant, with that TOML appended too, and each
    /// run is its own row (`ringway:NAME`); empty = one plain ringway row.
    pub variants: Vec<(String, String)>,
    /// A private `redis-server` runs for the scenario; `{redis}` = its `host:port`.
    pub redis: bool,
}

/// The shape of an `idle` scenario.
#[derive(Debug, Clone)]
pub struct Idle {
    pub connections: usize,
    pub path: String,
    /// Wait after the last response before reading RSS (buffers of idle connections are
    /// released after a grace period).
    pub settle: Duration,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub file: PathBuf,
    pub description: String,
    pub kind: Kind,
    pub response_body: usize,
    /// The upstream answers a JSON document (`rwload upstream --json`).
    pub response_json: bool,
    /// The upstream answers exactly this text (`rwload upstream --body-text`).
    pub response_text: Option<String>,
    pub upstream_delay: Duration,
    /// Idle upstream connections each gateway worker keeps (ringway `max_idle`, nginx
    /// `keepalive`); default 256. HTTP/2 loads need one per request in flight, or both
    /// gateways close and reopen upstream connections all run long.
    pub upstream_keepalive: usize,
    /// Expanded route list, in file order.
    pub routes: Vec<RouteMatch>,
    pub load: Option<Load>,
    pub idle: Option<Idle>,
    pub ringway: RingwayExtra,
    /// Serve and load over TLS.
    pub tls: Option<Tls>,
    /// Serve and load HTTP/2 (h2load).
    pub http2: Option<Http2>,
    /// nginx-only config lines.
    pub nginx: RawNginx,
}

/// Where the scenario files live: `loadtest/scenarios/` of this source tree.
pub fn default_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// Names of the scenarios in `dir`, sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension()? == "toml")
                        .then(|| p.file_stem().map(|s| s.to_string_lossy().into_owned()))?
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Loads a scenario by name (a file `NAME.toml` in `dir`) or by path to a `.toml` file.
pub fn load(name_or_path: &str, dir: &Path) -> Result<Scenario, String> {
    let direct = Path::new(name_or_path);
    let file = if name_or_path.ends_with(".toml") || name_or_path.contains('/') {
        direct.to_path_buf()
    } else {
        dir.join(format!("{name_or_path}.toml"))
    };
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "cannot read scenario {}: {e} (known scenarios: {})",
            file.display(),
            list(dir).join(", ")
        )
    })?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name_or_path.to_string());
    parse(&name, &file, &text).map_err(|e| format!("{}: {e}", file.display()))
}

/// Parses and validates scenario text.
pub fn parse(name: &str, file: &Path, text: &str) -> Result<Scenario, String> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| e.to_string())?;
    let response_body = parse_size(raw.upstream.body_size.as_deref().unwrap_or("20"))
        .map_err(|e| format!("upstream.body_size: {e}"))?;
    let upstream_delay = parse_duration(raw.upstream.delay.as_deref().unwrap_or("0"))
        .map_err(|e| format!("upstream.delay: {e}"))?;
    let upstream_keepalive = raw
        .upstream
        .keepalive
        .unwrap_or(crate::targets::UPSTREAM_KEEPALIVE);
    if !(1..=100_000).contains(&upstream_keepalive) {
        return Err("upstream.keepalive: 1..=100000 idle connections".into());
    }
    let routes = expand_routes(&raw.routes)?;
    let load = match (raw.kind, raw.load) {
        (Kind::Load, Some(l)) => Some(validate_load(l)?),
        (Kind::Load, None) => return Err("kind = \"load\" needs a [load] table".into()),
        (Kind::Idle, Some(_)) => return Err("kind = \"idle\" takes no [load] table".into()),
        (Kind::Idle, None) => None,
    };
    let idle = match (raw.kind, raw.idle) {
        (Kind::Idle, Some(i)) => Some(validate_idle(i)?),
        (Kind::Idle, None) => return Err("kind = \"idle\" needs an [idle] table".into()),
        (Kind::Load, Some(_)) => return Err("kind = \"load\" takes no [idle] table".into()),
        (Kind::Load, None) => None,
    };
    let tls = raw.tls.map(validate_tls).transpose()?;
    let http2 = raw.http2.map(|h| validate_http2(h, tls)).transpose()?;
    if let (Some(_), Some(l)) = (http2, &load) {
        check_http2_load(l)?;
    }
    if load.as_ref().is_some_and(|l| l.json) && http2.is_some() {
        return Err("load.json: JSON bodies are sent by rwload, not by h2load ([http2])".into());
    }
    let load = load.map(|l| Load { tls, http2, ..l });
    if raw.kind == Kind::Idle && tls.is_some_and(|t| t.handshakes != Handshakes::Keepalive) {
        return Err("tls.handshakes: idle connections are keep-alive".into());
    }
    if raw.kind == Kind::Idle && http2.is_some() {
        return Err("http2: idle scenarios speak HTTP/1.1".into());
    }
    Ok(Scenario {
        name: name.to_string(),
        tls,
        http2,
        file: file.to_path_buf(),
        description: raw.description.trim().to_string(),
        kind: raw.kind,
        response_body,
        response_json: raw.upstream.json,
        response_text: raw.upstream.body_text.clone(),
        upstream_delay,
        upstream_keepalive,
        nginx: raw.nginx.clone(),
        routes,
        load,
        idle,
        ringway: RingwayExtra {
            policies: raw.ringway.policies,
            config: raw.ringway.config.unwrap_or_default(),
            files: raw.ringway.files.into_iter().collect(),
            variants: raw
                .ringway
                .variants
                .into_iter()
                .map(|v| (v.name, v.config))
                .collect(),
            redis: raw.ringway.redis,
        },
    })
}

fn expand_routes(raw: &[RawRoute]) -> Result<Vec<RouteMatch>, String> {
    if raw.is_empty() {
        return Err("at least one [[routes]] entry is needed".into());
    }
    let mut out = Vec::new();
    for (n, r) in raw.iter().enumerate() {
        let (text, is_prefix) = match (&r.path, &r.prefix) {
            (Some(p), None) => (p, false),
            (None, Some(p)) => (p, true),
            _ => return Err(format!("routes[{n}]: exactly one of `path` or `prefix`")),
        };
        if !text.starts_with('/') {
            return Err(format!("routes[{n}]: `{text}` must start with /"));
        }
        let count = r.repeat.unwrap_or(1);
        if count == 0 || count > 1_000_000 {
            return Err(format!("routes[{n}]: repeat must be 1..=1000000"));
        }
        if count > 1 && !text.contains("{i}") {
            return Err(format!("routes[{n}]: repeat needs `{{i}}` in the path"));
        }
        for i in 0..count {
            let p = text.replace("{i}", &i.to_string());
            out.push(if is_prefix {
                RouteMatch::Prefix(p)
            } else {
                RouteMatch::Path(p)
            });
        }
    }
    Ok(out)
}

fn validate_load(l: RawLoad) -> Result<Load, String> {
    let method = l
        .method
        .unwrap_or_else(|| "GET".into())
        .to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(format!("load.method: `{method}` is not a method"));
    }
    let connections = l.connections.unwrap_or(50);
    if l.paths.is_empty() {
        return Err("load.paths: at least one path".into());
    }
    if let Some(p) = l.paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("load.paths: `{p}` must start with /"));
    }
    if let Some(h) = l.headers.iter().find(|h| !h.contains(':')) {
        return Err(format!("load.headers: `{h}` is not `Name: value`"));
    }
    if connections < l.paths.len() {
        return Err("load.connections: at least one connection per path".into());
    }
    if let Some(r) = l.rate {
        if !(r.is_finite() && r > 0.0) {
            return Err("load.rate: a positive number of requests per second".into());
        }
    }
    let d = |v: Option<String>, default: &str, field: &str| {
        parse_duration(v.as_deref().unwrap_or(default)).map_err(|e| format!("load.{field}: {e}"))
    };
    Ok(Load {
        method,
        body_size: parse_size(l.body_size.as_deref().unwrap_or("0"))
            .map_err(|e| format!("load.body_size: {e}"))?,
        json: l.json,
        connections,
        paths: l.paths,
        duration: d(l.duration, "10s", "duration")?,
        warmup: d(l.warmup, "1s", "warmup")?,
        rate: l.rate,
        timeout: d(l.timeout, "5s", "timeout")?,
        headers: l.headers,
        zipf: l.zipf,
        tls: None,
        http2: None,
    })
}

fn validate_http2(h: RawHttp2, tls: Option<Tls>) -> Result<Http2, String> {
    let streams = h.streams.unwrap_or(10);
    if !(1..=1000).contains(&streams) {
        return Err("http2.streams: 1..=1000 concurrent streams per connection".into());
    }
    let cleartext = h.cleartext.unwrap_or(false);
    match (cleartext, tls) {
        (true, Some(_)) => Err("http2.cleartext: h2c runs without [tls]".into()),
        (false, None) => {
            Err("http2: needs [tls] (ALPN h2), or cleartext = true for h2c prior knowledge".into())
        }
        (_, Some(t)) if t.handshakes != Handshakes::Keepalive => {
            Err("http2: tls.handshakes must be keepalive (h2load keeps its connections)".into())
        }
        _ => Ok(Http2 { streams, cleartext }),
    }
}

/// What h2load can send: GET without a body or POST with one (`-d FILE`), to paths of one host.
fn check_http2_load(l: &Load) -> Result<(), String> {
    match (l.method.as_str(), l.body_size) {
        ("GET", 0) => Ok(()),
        ("POST", n) if n > 0 => Ok(()),
        (m, n) => Err(format!(
            "http2: h2load sends GET without a body or POST with one, not {m} with {n} B"
        )),
    }
}

fn validate_tls(t: RawTls) -> Result<Tls, String> {
    let version = match t.version.as_deref() {
        None => None,
        Some("1.2") => Some("1.2"),
        Some("1.3") => Some("1.3"),
        Some(v) => return Err(format!("tls.version: `{v}` (use \"1.2\" or \"1.3\")")),
    };
    Ok(Tls {
        handshakes: t.handshakes.unwrap_or_default(),
        version,
    })
}

fn validate_idle(i: RawIdle) -> Result<Idle, String> {
    let connections = i.connections.unwrap_or(10_000);
    if connections == 0 {
        return Err("idle.connections: at least 1".into());
    }
    let path = i.path.unwrap_or_else(|| "/idle".into());
    if !path.starts_with('/') {
        return Err(format!("idle.path: `{path}` must start with /"));
    }
    Ok(Idle {
        connections,
        path,
        settle: parse_duration(i.settle.as_deref().unwrap_or("1s"))
            .map_err(|e| format!("idle.settle: {e}"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_scenarios_parse() {
        let dir = default_dir();
        let names = list(&dir);
        for want in [
            "proxy-small",
            "proxy-1k-post",
            "many-routes",
            "idle-conns",
            "policies",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
        }
        for n in &names {
            let s = load(n, &dir).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&s.name, n);
        }
        let many = load("many-routes", &dir).unwrap();
        assert_eq!(many.routes.len(), 10_000);
        let global = load("global-limit", &dir).unwrap();
        let variants: Vec<&str> = global.ringway.variants.iter().map(|v| &v.0[..]).collect();
        assert_eq!(variants, ["local", "leased", "exact"]);
        assert!(global.ringway.redis);
        assert!(global.ringway.variants[1]
            .1
            .contains("nodes = [\"{redis}\"]"));
        let post = load("proxy-1k-post", &dir).unwrap();
        let l = post.load.unwrap();
        assert_eq!((l.method.as_str(), l.body_size), ("POST", 1024));
        assert_eq!(post.response_body, 1024);
        assert_eq!(load("idle-conns", &dir).unwrap().kind, Kind::Idle);
        for (name, hs) in [
            ("tls-keepalive", Handshakes::Keepalive),
            ("tls-handshake", Handshakes::Full),
            ("tls-resume", Handshakes::Resumed),
            ("tls-idle-conns", Handshakes::Keepalive),
        ] {
            let s = load(name, &dir).unwrap();
            assert_eq!(s.tls.map(|t| t.handshakes), Some(hs), "{name}");
            if let Some(l) = &s.load {
                assert_eq!(l.tls, s.tls, "{name}: the load knows it is TLS");
            }
        }
        assert!(load("proxy-small", &dir).unwrap().tls.is_none());
        let h2 = load("h2-tls", &dir).unwrap();
        let want = Some(Http2 {
            streams: 10,
            cleartext: false,
        });
        assert_eq!(h2.http2, want);
        assert_eq!(
            h2.load.as_ref().unwrap().http2,
            want,
            "the load knows it is h2"
        );
        assert!(h2.tls.is_some());
        let h2c = load("h2c", &dir).unwrap();
        assert_eq!(h2c.http2.map(|h| h.cleartext), Some(true));
        assert!(h2c.tls.is_none());
        assert!(load("tls-keepalive", &dir).unwrap().http2.is_none());
    }

    #[test]
    fn http2_table_is_checked() {
        let p = |extra: &str| {
            parse(
                "t",
                Path::new("t.toml"),
                &format!("description = \"x\"\n[[routes]]\nprefix = \"/\"\n[load]\npaths = [\"/\"]\n{extra}"),
            )
        };
        let s = p("[tls]\n[http2]\nstreams = 4\n").unwrap();
        assert_eq!(s.http2.map(|h| h.streams), Some(4));
        for (extra, want) in [
            ("[http2]\n", "needs [tls]"),
            ("[tls]\n[http2]\ncleartext = true\n", "without [tls]"),
            ("[tls]\nhandshakes = \"full\"\n[http2]\n", "keepalive"),
            ("[tls]\n[http2]\nstreams = 0\n", "http2.streams"),
            ("[http2]\ncleartext = true\nwindow = 1\n", "window"),
        ] {
            let e = p(extra).unwrap_err();
            assert!(e.contains(want), "{extra}: {e}");
        }
        let e = parse(
            "t",
            Path::new("t.toml"),
            "description = \"x\"\n[[routes]]\nprefix = \"/\"\n[load]\nmethod = \"PUT\"\n\
             paths = [\"/\"]\n[http2]\ncleartext = true\n",
        )
        .unwrap_err();
        assert!(e.contains("GET without a body or POST"), "{e}");
    }

    #[test]
    fn tls_table_is_checked() {
        let p = |t: &str, kind: &str| {
            parse(
                "t",
                Path::new("t.toml"),
                &format!("description = \"x\"\n{kind}[[routes]]\nprefix = \"/\"\n{t}"),
            )
        };
        let load = "[load]\npaths = [\"/\"]\n";
        let s = p(&format!("{load}[tls]\nversion = \"1.2\"\n"), "").unwrap();
        assert_eq!(s.tls.map(|t| t.version), Some(Some("1.2")));
        let e = p(&format!("{load}[tls]\nversion = \"1.1\"\n"), "").unwrap_err();
        assert!(e.contains("tls.version"), "{e}");
        let e = p(&format!("{load}[tls]\nhandshakes = \"sometimes\"\n"), "").unwrap_err();
        assert!(e.contains("sometimes"), "{e}");
        let idle = "[idle]\n[tls]\nhandshakes = \"full\"\n";
        let e = p(idle, "kind = \"idle\"\n").unwrap_err();
        assert!(e.contains("tls.handshakes"), "{e}");
    }

    #[test]
    fn repeat_expands_and_errors_name_the_field() {
        let s = parse(
            "t",
            Path::new("t.toml"),
            "description = \"x\"\n[[routes]]\npath = \"/s{i}/a/{id}\"\nrepeat = 3\n\
             [[routes]]\nprefix = \"/\"\n[load]\npaths = [\"/s2/a/9\"]\n",
        )
        .unwrap();
        assert_eq!(
            s.routes,
            vec![
                RouteMatch::Path("/s0/a/{id}".into()),
                RouteMatch::Path("/s1/a/{id}".into()),
                RouteMatch::Path("/s2/a/{id}".into()),
                RouteMatch::Prefix("/".into()),
            ]
        );
        let e = parse(
            "t",
            Path::new("t.toml"),
            "description = \"x\"\n[[routes]]\nprefix = \"/\"\n[load]\npaths = [\"/\"]\nrate = -1\n",
        )
        .unwrap_err();
        assert!(e.contains("load.rate"), "{e}");
        let e = parse(
            "t",
            Path::new("t.toml"),
            "description = \"x\"\n[[routes]]\nprefix = \"/\"\n[load]\npaths = [\"/\"]\nbogus = 1\n",
        )
        .unwrap_err();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn units() {
        assert_eq!(parse_size("1KiB"), Ok(1024));
        assert_eq!(parse_size("20"), Ok(20));
        assert!(parse_size("1x").is_err());
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
    }
}

//! `[redis]`: where the shared state lives, how long a call may take, and the key prefix.
//! `compile` validates the table (errors name the field).
//!
//! ```toml
//! [redis]
//! nodes = ["10.0.0.5:6379"]        # one node, or the cluster's seed nodes
//! cluster = false                  # true: Redis Cluster (slots, MOVED/ASK)
//! username = "ringway"             # ACL user (optional)
//! password_env = "REDIS_PASSWORD"  # the password is read from this variable (optional)
//! timeout = "100ms"                # every command
//! connect_timeout = "250ms"
//! connections = 1                  # pipelined connections per node per thread
//! prefix = "ringway"               # every key and channel starts with "ringway:"
//! tls = { ca = "redis-ca.pem" }    # optional: TLS, verified (same options as an upstream's)
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::errors::Report;
use crate::config::units::RawDuration;
use crate::tls::upstream::RawUpstreamTls;

/// `[redis]` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    /// `"HOST:PORT"` of the server, or seed nodes of a cluster.
    #[schemars(with = "Vec<String>")]
    pub nodes: Spanned<Vec<Spanned<String>>>,
    /// Redis Cluster (default false).
    pub cluster: Option<bool>,
    /// ACL user name.
    #[schemars(with = "Option<String>")]
    pub username: Option<Spanned<String>>,
    /// Environment variable holding the password.
    #[schemars(with = "Option<String>")]
    pub password_env: Option<Spanned<String>>,
    /// Database number (standalone only; default 0).
    #[schemars(with = "Option<i64>")]
    pub db: Option<Spanned<i64>>,
    /// Per-command timeout (default 100ms).
    #[schemars(with = "Option<RawDuration>")]
    pub timeout: Option<Spanned<RawDuration>>,
    /// Connect timeout (default 250ms).
    #[schemars(with = "Option<RawDuration>")]
    pub connect_timeout: Option<Spanned<RawDuration>>,
    /// Pipelined connections per node per thread (default 1).
    #[schemars(with = "Option<i64>")]
    pub connections: Option<Spanned<i64>>,
    /// Prefix of every key and channel (default "ringway").
    #[schemars(with = "Option<String>")]
    pub prefix: Option<Spanned<String>>,
    /// TLS to Redis: `true` (system roots, the node's host name) or a table like an
    /// upstream's (`server_name`, `ca`, `client_cert`, `verify`).
    #[schemars(with = "Option<crate::tls::upstream::RawUpstreamTls>")]
    pub tls: Option<Spanned<crate::tls::upstream::RawUpstreamTls>>,
}

/// TLS to every node: one client config, one name verified (cluster nodes are announced by
/// IP, so they are all checked against the same name).
#[derive(Clone, Debug)]
pub struct RedisTls {
    pub client: Arc<rustls::ClientConfig>,
    pub name: rustls::pki_types::ServerName<'static>,
    /// Hash of every input (files included): equal settings keep the client across reloads.
    pub identity: u64,
}

impl PartialEq for RedisTls {
    fn eq(&self, other: &Self) -> bool {
        self.identity == other.identity
    }
}

impl Eq for RedisTls {}

/// The compiled table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisSettings {
    pub nodes: Vec<SocketAddr>,
    pub cluster: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub connections: usize,
    pub prefix: String,
    pub tls: Option<RedisTls>,
}

impl RedisSettings {
    /// Settings for `nodes` with every default (tests, tools).
    pub fn for_nodes(nodes: Vec<SocketAddr>, cluster: bool, prefix: &str) -> RedisSettings {
        RedisSettings {
            nodes,
            cluster,
            username: None,
            password: None,
            db: 0,
            timeout: Duration::from_millis(100),
            connect_timeout: Duration::from_millis(250),
            connections: 1,
            prefix: prefix.into(),
            tls: None,
        }
    }
}

/// Validates `[redis]`; `env` looks up the password variable, `base_dir` is where relative
/// TLS file names start. `None` if anything is wrong.
pub fn compile(
    raw: &RawRedis,
    env: &dyn Fn(&str) -> Option<String>,
    base_dir: &Path,
    r: &mut (impl Report + ?Sized),
) -> Option<RedisSettings> {
    let mut ok = true;
    let mut bad = |span: Range<usize>, field: &str, msg: String| {
        ok = false;
        r.report(span, field, msg);
    };
    let mut nodes = Vec::new();
    if raw.nodes.get_ref().is_empty() {
        bad(
            raw.nodes.span(),
            "redis.nodes",
            "name at least one HOST:PORT".into(),
        );
    }
    for (i, n) in raw.nodes.get_ref().iter().enumerate() {
        match n.get_ref().to_socket_addrs().map(|mut a| a.next()) {
            Ok(Some(a)) => nodes.push(a),
            _ => bad(
                n.span(),
                &format!("redis.nodes[{i}]"),
                format!("{:?} is not a reachable HOST:PORT", n.get_ref()),
            ),
        }
    }
    let cluster = raw.cluster.unwrap_or(false);
    let password = match &raw.password_env {
        None => None,
        Some(v) => match env(v.get_ref()) {
            Some(p) if !p.is_empty() => Some(p),
            _ => {
                bad(
                    v.span(),
                    "redis.password_env",
                    format!("environment variable {} is not set", v.get_ref()),
                );
                None
            }
        },
    };
    let db = match &raw.db {
        None => 0,
        Some(d) if cluster && *d.get_ref() != 0 => {
            bad(
                d.span(),
                "redis.db",
                "Redis Cluster has only database 0".into(),
            );
            0
        }
        Some(d) => match u32::try_from(*d.get_ref()) {
            Ok(v) if v < 1024 => v,
            _ => {
                bad(d.span(), "redis.db", "must be between 0 and 1023".into());
                0
            }
        },
    };
    let timeout = duration(&raw.timeout, "redis.timeout", 100, &mut bad);
    let connect_timeout = duration(&raw.connect_timeout, "redis.connect_timeout", 250, &mut bad);
    let connections = match &raw.connections {
        None => 1,
        Some(c) => match usize::try_from(*c.get_ref()) {
            Ok(v) if (1..=16).contains(&v) => v,
            _ => {
                bad(
                    c.span(),
                    "redis.connections",
                    "must be between 1 and 16".into(),
                );
                1
            }
        },
    };
    let prefix = match &raw.prefix {
        None => "ringway".to_string(),
        Some(p) => {
            let s = p.get_ref();
            if s.is_empty()
                || s.len() > 64
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
            {
                bad(
                    p.span(),
                    "redis.prefix",
                    "use 1 to 64 visible characters without braces".into(),
                );
            }
            s.clone()
        }
    };
    let username = raw.username.as_ref().map(|u| u.get_ref().clone());
    let tls = match &raw.tls {
        None => None,
        Some(t) => {
            let got = tls(t, raw, base_dir, &mut bad);
            if got.is_none() && !matches!(t.get_ref(), RawUpstreamTls::Enabled(false)) {
                return None;
            }
            got
        }
    };
    ok.then_some(RedisSettings {
        nodes,
        cluster,
        username,
        password,
        db,
        timeout,
        connect_timeout,
        connections,
        prefix,
        tls,
    })
}

/// Compiles `tls` with the upstreams' TLS compiler (same options, same checks), verifying
/// every node against the first node's host name or `server_name`.
fn tls(
    t: &Spanned<RawUpstreamTls>,
    raw: &RawRedis,
    base_dir: &Path,
    bad: &mut impl FnMut(Range<usize>, &str, String),
) -> Option<RedisTls> {
    let targets: Vec<(&str, Range<usize>)> = raw
        .nodes
        .get_ref()
        .iter()
        .take(1)
        .map(|n| (n.get_ref().as_str(), n.span()))
        .collect();
    let mut roots = crate::tls::upstream::SystemRoots::default();
    let mut cx = crate::tls::upstream::Context {
        base_dir,
        roots: &mut roots,
        targets: &targets,
        h2: false,
    };
    let mut fail = |span: Range<usize>, field: &str, msg: String| {
        // The upstream compiler names an upstream's fields; here the node list is `nodes`.
        let field = match field.strip_prefix("targets[") {
            Some(rest) => format!("redis.nodes[{}", rest.trim_end_matches(".address")),
            None => format!("redis.{field}"),
        };
        bad(
            span,
            &field,
            msg.replace("tls.server_name", "redis.tls.server_name"),
        )
    };
    let up = crate::tls::upstream::compile(t, &mut cx, &mut fail)?;
    let mut client = (*up.client).clone();
    // Redis speaks no ALPN protocol; offering http/1.1 would only confuse a strict server.
    client.alpn_protocols.clear();
    Some(RedisTls {
        client: Arc::new(client),
        name: up.names.first()?.clone(),
        identity: up.identity,
    })
}

fn duration(
    v: &Option<Spanned<RawDuration>>,
    field: &str,
    default_ms: u64,
    bad: &mut impl FnMut(Range<usize>, &str, String),
) -> Duration {
    match v {
        None => Duration::from_millis(default_ms),
        Some(d) => {
            let t = d.get_ref().0;
            if t.is_zero() || t > Duration::from_secs(30) {
                bad(d.span(), field, "must be between 1ms and 30s".into());
            }
            t
        }
    }
}

//! OIDC discovery: reading `{issuer}/.well-known/openid-configuration` (`fetch_document`) off
//! the workers, and the background source that keeps an `introspect` policy's introspection
//! endpoint fresh (`Discovery`, started through `DiscoveryFetchers`). The `jwt` policy's JWKS
//! fetcher calls `fetch_document` itself for its `jwks_uri` (`jwt::jwks`).
//!
//! Invariants:
//! - Only the control side and these background threads do I/O (blocking `ureq`); workers
//!   read the published endpoint with one atomic load and never wait for it.
//! - A document is used only when its `issuer` is exactly the configured one (OpenID Connect
//!   Discovery §4.3), so a document served for another issuer cannot redirect the gateway.
//! - An introspection endpoint is used only when its origin (scheme, host, port) is one of the
//!   configured upstream's targets: client credentials never go to a host the operator did not
//!   configure. A refused endpoint is logged and the last good one is kept.
//! - A failed refresh keeps the last good document; before the first success `snapshot()` is
//!   `None` (requests then fail closed: 503).
//! - A thread holds only a `Weak` to its source and exits once no policy uses it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwapOption, Guard};

use crate::log;

/// Largest discovery document accepted.
const MAX_DOCUMENT_BYTES: u64 = 256 * 1024;
/// Whole-request timeout of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed fetch, the next attempt comes this soon (or at the refresh, if sooner).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// What the gateway uses from a discovery document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub issuer: String,
    pub jwks_uri: Option<String>,
    pub introspection_endpoint: Option<String>,
}

/// The discovery document's URL for `issuer` (a trailing `/` on the issuer is not doubled).
pub fn well_known(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// A blocking HTTP agent for discovery and key fetches. It follows no redirect: the transport
/// rule (https, or http to a loopback host) is checked on the URL the config names or the
/// document lists, and a redirect would lead past it, to keys served over plain http from
/// anywhere. A 3xx is an error (`refuse_redirect`).
pub fn agent(user_agent: &str) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .user_agent(user_agent)
        .max_redirects(0)
        .build()
        .into()
}

/// `Err` for a redirect answer (the agent does not follow them), naming where it pointed.
pub fn refuse_redirect<B>(resp: &ureq::http::Response<B>) -> Result<(), String> {
    if !resp.status().is_redirection() {
        return Ok(());
    }
    let to = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("nowhere");
    // The IdP's text goes into the gateway's log: printable ASCII only (a Location is ASCII;
    // a control or bidi character there could forge or reorder a log line).
    let to: String = to
        .chars()
        .take(200)
        .filter(char::is_ascii_graphic)
        .collect();
    Err(format!(
        "answered {} with a redirect to {to:?}: redirects are not followed (they could lead \
         past the https-or-loopback rule); configure the final URL",
        resp.status().as_u16()
    ))
}

/// Fetches and checks `issuer`'s discovery document (blocking: never on a worker).
pub fn fetch_document(agent: &ureq::Agent, issuer: &str) -> Result<Document, String> {
    let url = well_known(issuer);
    let mut resp = agent
        .get(&url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| format!("{url}: {e}"))?;
    refuse_redirect(&resp).map_err(|e| format!("{url}: {e}"))?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{url}: {e}"))?;
    parse_document(&body, issuer).map_err(|e| format!("{url}: {e}"))
}

/// Parses a discovery document and checks that it speaks for `issuer`.
pub fn parse_document(body: &[u8], issuer: &str) -> Result<Document, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not a JSON document: {e}"))?;
    let text = |name: &str| v.get(name).and_then(|x| x.as_str()).map(str::to_string);
    let Some(doc_issuer) = text("issuer") else {
        return Err("the document has no `issuer`".into());
    };
    if doc_issuer != issuer {
        return Err(format!(
            "the document is for issuer {doc_issuer:?}, not the configured {issuer:?}"
        ));
    }
    Ok(Document {
        issuer: doc_issuer,
        jwks_uri: text("jwks_uri"),
        introspection_endpoint: text("introspection_endpoint"),
    })
}

/// An origin: scheme, lowercase host (IPv6 without brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A `host:port` target address as an origin with the given scheme.
pub fn target_origin(address: &str, https: bool) -> Option<Origin> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    Some(Origin {
        https,
        host: host.to_ascii_lowercase(),
        port: port.parse().ok()?,
    })
}

/// An absolute http(s) URL split into its origin and origin-form target (path and query).
pub fn split_url(url: &str) -> Option<(Origin, String)> {
    let uri = url.parse::<ureq::http::Uri>().ok()?;
    let https = match uri.scheme_str()? {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let auth = uri.authority()?;
    // Credentials in the URL (`user@host`) are never sent on.
    if auth.as_str().contains('@') {
        return None;
    }
    let host = auth.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .to_ascii_lowercase();
    if host.is_empty() {
        return None;
    }
    let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let target = if target.is_empty() {
        "/".to_string()
    } else {
        target
    };
    Some((Origin { https, host, port }, target))
}

/// Whether `url` may be fetched for keys or discovery: https, or http to a loopback host
/// (127.0.0.0/8, ::1, localhost), because anyone on the path could otherwise replace what it
/// says (the keys that sign tokens, the endpoint credentials go to).
pub fn check_transport(url: &str) -> Result<(), String> {
    let Some((origin, _)) = split_url(url) else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let loopback = origin.host == "localhost"
        || origin
            .host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if origin.https || loopback {
        Ok(())
    } else {
        Err(format!(
            "{url:?}: what is fetched over http:// could be replaced in transit; use https:// \
             (http:// is allowed only for a loopback host: 127.0.0.0/8, ::1, localhost)"
        ))
    }
}

/// What an introspection policy uses from its issuer's discovery document.
#[derive(Debug)]
pub struct Discovered {
    /// The introspection endpoint's origin-form target (path and query).
    pub introspection_target: Box<[u8]>,
}

/// An issuer's introspection endpoint kept fresh by its own thread; shared by every policy
/// with the same issuer, refresh and allowed origins.
pub struct Discovery {
    issuer: String,
    allowed: Vec<Origin>,
    current: ArcSwapOption<Discovered>,
    thread: OnceLock<Thread>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl Discovery {
    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The current endpoint (`None` until the first good document). One atomic load.
    pub fn snapshot(&self) -> Guard<Option<Arc<Discovered>>> {
        self.current.load()
    }

    /// Fetch attempts so far.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Failed or refused fetches so far.
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The endpoint a document names, if it is on an allowed origin.
    fn endpoint(&self, doc: &Document) -> Result<Discovered, String> {
        let Some(url) = &doc.introspection_endpoint else {
            return Err("the document has no `introspection_endpoint`".into());
        };
        let Some((origin, target)) = split_url(url) else {
            return Err(format!(
                "introspection_endpoint {url:?} is not an http(s) URL"
            ));
        };
        if !self.allowed.contains(&origin) {
            return Err(format!(
                "introspection_endpoint {url:?} is on {origin}, which is not a target of the \
                 policy's upstream; refused (credentials go only to configured hosts)"
            ));
        }
        let safe = target.starts_with('/')
            && !target
                .bytes()
                .any(|b| b.is_ascii_control() || b == b' ' || b == b'#');
        if !safe {
            return Err(format!(
                "introspection_endpoint {url:?} has an unusable path"
            ));
        }
        Ok(Discovered {
            introspection_target: target.into_bytes().into(),
        })
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // Wake the thread so it notices the source is gone and exits.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FetcherKey {
    issuer: String,
    refresh: Duration,
    allowed: Vec<Origin>,
}

/// Running discovery sources, keyed by issuer and settings. Lives on the control side across
/// reloads, so an unchanged issuer keeps its thread and its last good endpoint.
#[derive(Default)]
pub struct DiscoveryFetchers {
    // Only the control thread (config compile) takes this lock; workers never see it.
    map: Mutex<HashMap<FetcherKey, Weak<Discovery>>>,
}

impl DiscoveryFetchers {
    /// The running source for these settings, or a new one with its thread started.
    pub fn get_or_start(
        &self,
        issuer: &str,
        refresh: Duration,
        allowed: Vec<Origin>,
    ) -> Result<Arc<Discovery>, String> {
        let key = FetcherKey {
            issuer: issuer.to_string(),
            refresh,
            allowed: allowed.clone(),
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(src) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(src);
        }
        let src = Arc::new(Discovery {
            issuer: issuer.to_string(),
            allowed,
            current: ArcSwapOption::empty(),
            thread: OnceLock::new(),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&src);
        let handle = thread::Builder::new()
            .name("oidc-discovery".into())
            .spawn(move || discovery_loop(weak, refresh))
            .map_err(|e| format!("cannot start the discovery thread: {e}"))?;
        let _ = src.thread.set(handle.thread().clone());
        handle.thread().unpark();
        map.insert(key, Arc::downgrade(&src));
        Ok(src)
    }
}

fn discovery_loop(weak: Weak<Discovery>, refresh: Duration) {
    let agent = agent("ringway-oidc");
    let issuer = match weak.upgrade() {
        Some(src) => src.issuer.clone(),
        None => return,
    };
    let mut next_due = Instant::now();
    loop {
        let Some(src) = weak.upgrade() else { return };
        let now = Instant::now();
        if now < next_due {
            drop(src);
            thread::park_timeout(next_due - now);
            continue;
        }
        src.fetches.fetch_add(1, Ordering::Relaxed);
        drop(src);
        let result = fetch_document(&agent, &issuer);
        let Some(src) = weak.upgrade() else { return };
        match result.and_then(|doc| src.endpoint(&doc)) {
            Ok(found) => {
                let changed = src
                    .current
                    .load()
                    .as_deref()
                    .map(|d| &d.introspection_target)
                    != Some(&found.introspection_target);
                if changed {
                    log::info(&format!(
                        "oidc {issuer}: introspection endpoint {}",
                        String::from_utf8_lossy(&found.introspection_target)
                    ));
                }
                src.current.store(Some(Arc::new(found)));
                next_due = Instant::now() + refresh;
            }
            Err(why) => {
                src.failures.fetch_add(1, Ordering::Relaxed);
                let kept = if src.current.load().is_some() {
                    "keeping the last good endpoint"
                } else {
                    "no endpoint yet: introspecting requests get 503 until a fetch succeeds"
                };
                log::warn(&format!("oidc {issuer}: discovery failed: {why}; {kept}"));
                next_due = Instant::now() + RETRY_AFTER_FAILURE.min(refresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_must_name_the_configured_issuer() {
        let doc = br#"{"issuer":"https://idp.test","jwks_uri":"https://idp.test/keys",
            "introspection_endpoint":"https://idp.test/introspect"}"#;
        let d = parse_document(doc, "https://idp.test").unwrap();
        assert_eq!(d.jwks_uri.as_deref(), Some("https://idp.test/keys"));
        assert!(parse_document(doc, "https://other.test").is_err());
        assert!(parse_document(b"<html>", "https://idp.test").is_err());
        assert!(parse_document(br#"{"jwks_uri":"x"}"#, "https://idp.test").is_err());
    }

    #[test]
    fn urls_split_into_origin_and_target() {
        let (o, t) = split_url("https://IdP.test/oauth/introspect?x=1").unwrap();
        assert_eq!((o.https, o.host.as_str(), o.port), (true, "idp.test", 443));
        assert_eq!(t, "/oauth/introspect?x=1");
        let (o, t) = split_url("http://[::1]:8080").unwrap();
        assert_eq!((o.host.as_str(), o.port, t.as_str()), ("::1", 8080, "/"));
        assert!(split_url("ftp://x/").is_none());
        assert!(split_url("https://user:pw@idp.test/").is_none());
        assert_eq!(
            target_origin("[::1]:8080", false),
            Some(Origin {
                https: false,
                host: "::1".into(),
                port: 8080
            })
        );
        assert!(check_transport("http://127.0.0.1:9/x").is_ok());
        assert!(check_transport("http://idp.test/x").is_err());
        assert!(check_transport("https://idp.test/x").is_ok());
    }

    #[test]
    fn endpoints_off_the_upstream_are_refused() {
        let d = Discovery {
            issuer: "https://idp.test".into(),
            allowed: vec![target_origin("idp.test:443", true).unwrap()],
            current: ArcSwapOption::empty(),
            thread: OnceLock::new(),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        };
        let doc = |e: &str| Document {
            issuer: "https://idp.test".into(),
            jwks_uri: None,
            introspection_endpoint: Some(e.into()),
        };
        let ok = d.endpoint(&doc("https://idp.test/introspect")).unwrap();
        assert_eq!(&*ok.introspection_target, b"/introspect");
        assert!(d.endpoint(&doc("https://evil.test/introspect")).is_err());
        assert!(d.endpoint(&doc("http://idp.test:443/introspect")).is_err());
        assert!(d
            .endpoint(&doc("https://idp.test:8443/introspect"))
            .is_err());
    }
}

//! Remote JWK Sets: one background thread per distinct (URL, refresh, min_refresh) fetches the
//! set with blocking `ureq`, and publishes it through an `ArcSwapOption` that workers read
//! with one atomic load.
//!
//! Invariants:
//! - Workers never block: they read `snapshot()` and, on an unknown `kid`, call
//!   `request_refresh()`, which is an atomic flag plus `Thread::unpark` (and nothing at all
//!   while a refresh is already pending).
//! - On-demand refreshes are rate-limited: at most one fetch per `min_refresh`, however many
//!   nudges arrive; pending nudges coalesce into one fetch when the cooldown ends.
//! - A failed fetch keeps the last good set; before the first success `snapshot()` is `None`
//!   and requests fail fast (401) instead of waiting.
//! - The thread holds only a `Weak` to its source and exits once every policy using it has
//!   been dropped (a reload that no longer names the URL).
//! - A discovering source (`jwt` with only an `issuer`) reads the issuer's OIDC discovery
//!   document before each key fetch and takes its `jwks_uri` (https, or http to loopback);
//!   when the document cannot be read, the last good `jwks_uri` is used.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwapOption, Guard};

use super::alg::Key;
use super::keys::{parse_jwks, ParsedJwks};
use crate::log;

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: u64 = 1 << 20;

/// One published key set.
pub struct KeySnapshot {
    pub keys: Vec<Key>,
    /// Starts at 1 and grows each time the fetched document changes; cache entries remember it
    /// so a rotation re-verifies cached tokens.
    pub generation: u64,
}

/// A JWKS URL kept fresh by its own thread. Shared by every policy naming the same URL.
pub struct JwksSource {
    /// The JWKS URL, or the issuer when `discover` is set.
    url: String,
    discover: bool,
    keys: ArcSwapOption<KeySnapshot>,
    nudge: AtomicBool,
    thread: OnceLock<Thread>,
    fetches: AtomicU64,
    failures: AtomicU64,
}

impl JwksSource {
    /// The URL this source fetches.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current key set (`None` until the first fetch succeeds). One atomic load.
    pub fn snapshot(&self) -> Guard<Option<Arc<KeySnapshot>>> {
        self.keys.load()
    }

    /// Asks the fetcher for an early refresh. Non-blocking; free while one is already pending.
    pub fn request_refresh(&self) {
        // A plain load first keeps a flood of unknown kids from bouncing the cache line.
        if !self.nudge.load(Ordering::Relaxed) && !self.nudge.swap(true, Ordering::AcqRel) {
            if let Some(t) = self.thread.get() {
                t.unpark();
            }
        }
    }

    /// Fetch attempts so far (successful or not).
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Failed fetch attempts so far.
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

impl Drop for JwksSource {
    fn drop(&mut self) {
        // Wake the thread so it notices the source is gone and exits.
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct FetcherKey {
    url: String,
    discover: bool,
    refresh: Duration,
    min_refresh: Duration,
}

/// Registry of running JWKS fetchers, keyed by URL and refresh settings. Lives on the control
/// side across reloads so an unchanged URL keeps its thread and its cached keys.
#[derive(Default)]
pub struct JwksFetchers {
    // Only the control thread (config compile) takes this lock; workers never see it.
    map: Mutex<HashMap<FetcherKey, Weak<JwksSource>>>,
}

impl JwksFetchers {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The running source for these settings, or a new one with its thread started. With
    /// `discover`, `url` is an issuer whose OIDC discovery document names the JWKS URL.
    pub fn get_or_start(
        &self,
        url: &str,
        refresh: Duration,
        min_refresh: Duration,
        discover: bool,
    ) -> Result<Arc<JwksSource>, String> {
        let key = FetcherKey {
            url: url.to_string(),
            discover,
            refresh,
            min_refresh,
        };
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        if let Some(src) = map.get(&key).and_then(Weak::upgrade) {
            return Ok(src);
        }
        let src = Arc::new(JwksSource {
            url: url.to_string(),
            discover,
            keys: ArcSwapOption::empty(),
            nudge: AtomicBool::new(false),
            thread: OnceLock::new(),
            fetches: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&src);
        let handle = thread::Builder::new()
            .name("jwks-fetch".into())
            .spawn(move || fetch_loop(weak, refresh, min_refresh))
            .map_err(|e| format!("cannot start the JWKS fetcher thread: {e}"))?;
        let _ = src.thread.set(handle.thread().clone());
        // The thread may have parked before `thread` was set; wake it once so it starts.
        handle.thread().unpark();
        map.insert(key, Arc::downgrade(&src));
        Ok(src)
    }

    /// Fetchers still in use by some policy.
    pub fn len(&self) -> usize {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }

    /// Whether no fetcher is in use.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn fetch_loop(weak: Weak<JwksSource>, refresh: Duration, min_refresh: Duration) {
    let agent = crate::oidc::agent("ringway-jwks");
    let (url, discover) = match weak.upgrade() {
        Some(src) => (src.url.clone(), src.discover),
        None => return,
    };
    let mut jwks_uri: Option<String> = None;
    let mut last_fetch: Option<Instant> = None;
    let mut next_due = Instant::now();
    let mut last_body: Option<Vec<u8>> = None;
    let mut generation = 0u64;
    loop {
        let Some(src) = weak.upgrade() else { return };
        let now = Instant::now();
        let nudged = src.nudge.load(Ordering::Acquire);
        let cooldown_end = last_fetch.map(|t| t + min_refresh);
        let cooled = cooldown_end.is_none_or(|t| now >= t);
        if now >= next_due || (nudged && cooled) {
            // Clear before fetching: a nudge that arrives during the fetch asks for a later one.
            src.nudge.store(false, Ordering::Release);
            src.fetches.fetch_add(1, Ordering::Relaxed);
            drop(src);
            let result = if discover {
                discover_jwks_uri(&agent, &url, &mut jwks_uri).and_then(|uri| fetch(&agent, &uri))
            } else {
                fetch(&agent, &url)
            };
            last_fetch = Some(Instant::now());
            let Some(src) = weak.upgrade() else { return };
            match result {
                Ok((body, parsed)) => {
                    if last_body.as_deref() != Some(&body[..]) {
                        generation += 1;
                        last_body = Some(body);
                        if !parsed.skipped.is_empty() {
                            log::info(&format!(
                                "jwks {url}: skipped keys: {}",
                                parsed.skipped.join("; ")
                            ));
                        }
                    }
                    let keys = Arc::new(KeySnapshot {
                        keys: parsed.keys,
                        generation,
                    });
                    src.keys.store(Some(keys));
                    next_due = Instant::now() + refresh;
                }
                Err(why) => {
                    src.failures.fetch_add(1, Ordering::Relaxed);
                    let kept = if src.keys.load().is_some() {
                        "keeping the last good keys"
                    } else {
                        "no keys yet: tokens are rejected until a fetch succeeds"
                    };
                    log::warn(&format!("jwks {url}: fetch failed: {why}; {kept}"));
                    // Retry sooner than the schedule, but never faster than min_refresh.
                    next_due = Instant::now() + min_refresh.min(refresh);
                }
            }
            continue;
        }
        let wake = match (nudged, cooldown_end) {
            (true, Some(t)) => next_due.min(t),
            _ => next_due,
        };
        drop(src);
        thread::park_timeout(wake.saturating_duration_since(now));
    }
}

/// The issuer's current `jwks_uri` (remembered in `last`); the last good one when the
/// discovery document cannot be read or names an unusable URL (logged).
fn discover_jwks_uri(
    agent: &ureq::Agent,
    issuer: &str,
    last: &mut Option<String>,
) -> Result<String, String> {
    let found = crate::oidc::fetch_document(agent, issuer).and_then(|doc| {
        let uri = doc
            .jwks_uri
            .ok_or_else(|| "the discovery document has no `jwks_uri`".to_string())?;
        crate::oidc::check_transport(&uri)?;
        Ok(uri)
    });
    match found {
        Ok(uri) => {
            if last.as_deref() != Some(&uri) {
                log::info(&format!("oidc {issuer}: jwks_uri {uri}"));
            }
            *last = Some(uri.clone());
            Ok(uri)
        }
        Err(why) => match last {
            Some(uri) => {
                log::warn(&format!(
                    "oidc {issuer}: discovery failed: {why}; using the last jwks_uri"
                ));
                Ok(uri.clone())
            }
            None => Err(format!("discovery: {why}")),
        },
    }
}

/// One blocking fetch: the body (to detect changes) and its usable keys.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<(Vec<u8>, ParsedJwks), String> {
    let mut resp = agent
        .get(url)
        .header("accept", "application/json")
        .call()
        .map_err(|e| e.to_string())?;
    crate::oidc::refuse_redirect(&resp)?;
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_JWKS_BYTES)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    let parsed = parse_jwks(&body)?;
    Ok((body, parsed))
}

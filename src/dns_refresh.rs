//! The DNS refresh thread: re-resolves upstream host names when their answers expire and, when
//! any name's addresses changed, re-compiles the serving generation's own text so workers pick
//! up the new targets at their next request (idle connections to addresses that stayed are
//! carried over, as on any reload).
//!
//! It blocks on name servers, so it is its own thread: never a worker, never the signal loop.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::shared::Shared;

/// Longest sleep between checks, so a drain or a reload that added names is noticed soon.
const MAX_NAP: Duration = Duration::from_millis(500);

/// How often addresses a recompile could not apply are tried again.
const RETRY: Duration = Duration::from_secs(5);

/// Starts the thread; it ends when the process drains.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringway-dns".into())
        .spawn(move || run(&shared))
        .map(|_| ())
}

fn run(shared: &Shared) {
    // The cache already holds addresses a failed recompile could not apply: they are tried
    // again every `RETRY` until a recompile succeeds, not only when an answer changes again.
    let mut retry_at: Option<Instant> = None;
    while !shared.draining.load(Ordering::Relaxed) {
        let cache = &shared.runtime.dns;
        let now = Instant::now();
        let mut nap = cache
            .next_due()
            .map(|due| due.saturating_duration_since(now))
            .unwrap_or(MAX_NAP)
            .min(MAX_NAP);
        if let Some(t) = retry_at {
            nap = nap.min(t.saturating_duration_since(now));
        }
        if !nap.is_zero() {
            std::thread::sleep(nap);
            continue;
        }
        let settings = shared.config.load().dns.clone();
        let changed = cache.refresh_expired(&settings);
        let retry_due = retry_at.is_some_and(|t| Instant::now() >= t);
        if changed || retry_due {
            match crate::control::refresh_addresses(shared) {
                Ok(_) => retry_at = None,
                Err(e) => {
                    if retry_at.is_none() {
                        crate::log::error(&format!(
                            "dns: new upstream addresses could not be applied (retrying every {} s): {e}",
                            RETRY.as_secs()
                        ));
                    }
                    retry_at = Some(Instant::now() + RETRY);
                }
            }
        }
    }
}

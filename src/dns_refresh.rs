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

/// Starts the thread; it ends when the process drains.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringway-dns".into())
        .spawn(move || run(&shared))
        .map(|_| ())
}

fn run(shared: &Shared) {
    while !shared.draining.load(Ordering::Relaxed) {
        let cache = &shared.runtime.dns;
        let nap = cache
            .next_due()
            .map(|due| due.saturating_duration_since(Instant::now()))
            .unwrap_or(MAX_NAP)
            .min(MAX_NAP);
        if !nap.is_zero() {
            std::thread::sleep(nap);
            continue;
        }
        let settings = shared.config.load().dns.clone();
        if cache.refresh_expired(&settings) {
            if let Err(e) = crate::control::refresh_addresses(shared) {
                crate::log::error(&format!(
                    "dns: new upstream addresses could not be applied: {e}"
                ));
            }
        }
    }
}

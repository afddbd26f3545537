//! `block_on`: a private single-thread runtime for code that is not on a worker.

use std::future::Future;

/// Runs `f` to completion on a fresh single-thread monoio runtime with timers (the CLI, the
/// background thread, tests). Not for workers: they already run one.
pub fn block_on<F: Future>(f: F) -> F::Output {
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
    {
        Ok(mut rt) => rt.block_on(f),
        // Building a legacy (epoll) runtime fails only when the process is out of descriptors.
        Err(e) => panic!("cannot build a runtime for Redis: {e}"),
    }
}

//! Per-thread recycling of the buffers a parsed head owns (its byte copy and header spans), so
//! steady-state request handling allocates nothing for heads: a dropped `RequestHead` or
//! `ResponseHead` returns its vectors here and the next parse on the same thread reuses them.
//! Bounded: at most `MAX_POOLED` pairs are kept, and oversized vectors are freed instead.

use std::cell::RefCell;

use super::types::HeaderSpan;

const MAX_POOLED: usize = 256;
const MAX_KEPT_BYTES: usize = 32 * 1024;
const MAX_KEPT_HEADERS: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<(Vec<u8>, Vec<HeaderSpan>)>> = const { RefCell::new(Vec::new()) };
}

/// Empty vectors, reused when available.
pub(super) fn take() -> (Vec<u8>, Vec<HeaderSpan>) {
    POOL.with(|p| p.borrow_mut().pop()).unwrap_or_default()
}

/// Gives a head's vectors back for reuse.
pub(super) fn give(mut bytes: Vec<u8>, mut headers: Vec<HeaderSpan>) {
    if bytes.capacity() == 0
        || bytes.capacity() > MAX_KEPT_BYTES
        || headers.capacity() > MAX_KEPT_HEADERS
    {
        return;
    }
    bytes.clear();
    headers.clear();
    // `try_with`: heads dropped during thread teardown just free their memory.
    let _ = POOL.try_with(|p| {
        if let Ok(mut pool) = p.try_borrow_mut() {
            if pool.len() < MAX_POOLED {
                pool.push((bytes, headers));
            }
        }
    });
}

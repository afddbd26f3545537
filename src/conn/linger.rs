//! Lingering close (nginx's `lingering_close`): after an error response on a connection whose
//! client may still be sending the request (a 413 for a body being uploaded, a 400 mid-body, a
//! rejected head), closing at once makes the kernel answer the unread bytes with a reset, and
//! a reset can destroy the response before the client reads it. So: shut down our write side
//! (the response is followed by a FIN), then read and drop what the client still sends, until it
//! closes, `timeouts.lingering_close` passes or `limits.lingering_bytes` were dropped.
//!
//! Bounded in time and bytes; the buffer is the connection's own read buffer (no allocation
//! beyond its existing capacity).

use std::os::fd::AsRawFd;
use std::time::Instant;

use crate::tls::transport::Transport;

use crate::config::Timeouts;
use crate::io::read_more;

/// Drains the client for a bounded time after the response was written; the caller closes.
/// `buf` is the connection's read buffer, `pending` the unread bytes already in it.
pub async fn linger(stream: &mut Transport, buf: &mut Vec<u8>, pending: usize, t: &Timeouts) {
    let limit = t.lingering_bytes;
    let time = t.lingering_close;
    if time.is_zero() || limit == 0 {
        return;
    }
    stream
        .close_notify(Instant::now() + time.min(std::time::Duration::from_secs(1)))
        .await;
    // SAFETY: the fd is the client's open socket (owned by `stream`); shutdown does not
    // close it.
    unsafe {
        libc::shutdown(stream.as_raw_fd(), libc::SHUT_WR);
    }
    let deadline = Instant::now() + time;
    let mut dropped = pending as u64;
    while dropped < limit {
        buf.clear();
        match read_more(stream, buf, deadline, 64 * 1024).await {
            Ok(n) => dropped += n as u64,
            // Timeout, EOF or error: done either way (after a timeout the stream is dropped).
            Err(_) => break,
        }
    }
}

//! The HTTP/1.1 keep-alive pool of one worker: taking and returning idle connections.
//!
//! Pool reuse rule: a pooled connection carries another request only if, at the moment it is
//! taken, it has no unread byte, no pending error and no EOF. Bytes an upstream sent after the
//! response had ended (a stray response after a 204, a body after a HEAD) would otherwise be
//! read as the answer to the next, unrelated client's request. `put_idle` refuses a
//! connection whose read buffer is not empty; `take_idle` checks the socket itself on every
//! reuse with a zero-timeout `poll`, the only system call on the fast path. One call per reuse
//! cost 2–6 % of the gateway's CPU on a VM whose kernel entry is costly, so `liveness` batches
//! them: every connection taken in one turn of the worker's loop shares one call (one per
//! 11–17 reuses under load; see loadtest/RESULTS.md). The alternative, an io_uring poll or recv posted while the connection
//! idles, costs a submission and a completion on every `put_idle` plus a cancel and its
//! completion on every `take_idle` (monoio cancels a dropped op asynchronously: the connection
//! may not carry a request, nor its fd be closed and reused, until the cancel has completed),
//! and still leaves a window between a completion and its reap. Posting the response's first
//! read before the request's write and checking which completed first (io_uring posts them
//! in order) was built and measured: no system call, but the early read always arms a poll,
//! which costs as much here (loadtest/RESULTS.md, "by completion order"). The poll reads the
//! kernel's state at the moment of reuse. Bytes that arrive after it are indistinguishable
//! from the answer to the new request: no HTTP/1.1 client can close that window, so
//! connections whose responses invite a late body (after HEAD, a 204 announcing one) are not
//! pooled at all.
//!
//! TLS connections (`Transport::Tls`) are pooled the same way. Their check is one
//! non-blocking `recv` through rustls instead of the poll (`TlsStream::absorb`): TLS 1.3
//! servers send records that carry no data at any time (session tickets, key updates), and
//! those keep the connection; decrypted data, close_notify, EOF or a TLS error drop it.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::tls::stream::Absorbed;
use crate::tls::transport::Transport;

/// A connection to one target, with its reusable read buffer.
pub struct UpConn {
    pub stream: Transport,
    /// Read buffer; empty whenever the connection sits in the pool.
    pub buf: Vec<u8>,
    pub target: usize,
    /// Came out of the pool (so it may have been closed by the upstream meanwhile).
    pub reused: bool,
    /// The upstream's connection count held by this connection (only while the upstream has
    /// a `max_connections` limit); given back when the connection is dropped.
    pub slot: Option<crate::resilience::ConnSlot>,
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

/// One target's idle HTTP/1.1 connections on this worker, oldest first.
#[derive(Default)]
pub struct IdlePool {
    idle: RefCell<VecDeque<Idle>>,
}

impl IdlePool {
    /// Newest idle connection that has not outlived `idle_timeout` and has nothing to read
    /// (see the module header: checked on every reuse).
    pub async fn take(&self, now: Instant, idle_timeout: Duration) -> Option<UpConn> {
        loop {
            let entry = {
                let mut idle = self.idle.borrow_mut();
                let entry = idle.pop_back()?;
                if now.duration_since(entry.since) >= idle_timeout {
                    // Everything older is staler still.
                    idle.clear();
                    return None;
                }
                entry
            };
            // Closed by the upstream meanwhile (FIN or RST already here) or holding bytes
            // nobody asked for: dropped, never handed to a request.
            let mut conn = entry.conn;
            if idle_conn_open(&mut conn.stream).await {
                conn.reused = true;
                return Some(conn);
            }
        }
    }

    /// Returns a connection whose last exchange completed cleanly, keeping at most `max_idle`
    /// (the oldest goes first).
    pub fn put(&self, mut conn: UpConn, now: Instant, max_idle: usize) {
        if max_idle == 0 || !conn.buf.is_empty() || conn.stream.has_buffered() {
            return;
        }
        if let Transport::Tls(t) = &mut conn.stream {
            t.trim();
        }
        let mut idle = self.idle.borrow_mut();
        if idle.len() >= max_idle {
            idle.pop_front();
        }
        idle.push_back(Idle { conn, since: now });
    }

    /// Frees the read buffers of the idle connections (a quiet worker giving memory back); a
    /// connection taken later grows a new one on its first read.
    pub fn release_buffers(&self) {
        for entry in self.idle.borrow_mut().iter_mut() {
            entry.conn.buf = Vec::new();
        }
    }

    /// Drops every idle connection.
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
    }

    /// Moves every idle connection of `other` into this pool (a reload carrying them over).
    pub fn take_from(&self, other: &IdlePool) {
        *self.idle.borrow_mut() = other.idle.take();
    }
}

/// True if an idle pooled connection still looks open: nothing to read (no EOF, no error, no
/// unsolicited bytes). Pooled connections have no I/O in flight, so the check never races the
/// runtime. Over TLS, bytes that arrived while idle may be records that carry no data (TLS
/// 1.3 session tickets, key updates): they are taken through rustls without waiting, and the
/// connection is dropped only if they decrypt to data, end the session or are not valid TLS.
async fn idle_conn_open(s: &mut Transport) -> bool {
    match s {
        Transport::Plain(t) => {
            use std::os::fd::AsRawFd;
            super::liveness::quiet(t.as_raw_fd()).await
        }
        // One non-blocking recv instead of the poll: nothing there, or only records without data.
        Transport::Tls(t) => !t.has_buffered() && t.absorb() == Absorbed::Quiet,
    }
}

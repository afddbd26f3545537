//! Per-worker upstream state: smooth weighted round-robin over targets, passive back-off for
//! targets that refuse connections, and keep-alive connection pools.
//!
//! Everything here is `!Send` and owned by one worker (Cell/RefCell, no locks). A new config
//! generation builds fresh `UpstreamState`s but carries idle connections and back-off over by
//! (upstream name, target address), so a reload does not drop warm connections.
//!
//! Pool reuse rule: a pooled connection carries another request only if, at the moment it is
//! taken, it has no unread byte, no pending error and no EOF. Bytes an upstream sent after the
//! response had ended (a stray response after a 204, a body after a HEAD) would otherwise be
//! read as the answer to the next, unrelated client's request. `put_idle` refuses a
//! connection whose read buffer is not empty; `take_idle` checks the socket itself with one
//! non-blocking `recv(MSG_PEEK)` on every reuse (one syscall, ~0.4 µs of CPU: a few percent
//! of the gateway's CPU per proxied request). The alternative, an io_uring poll or recv posted while the connection idles,
//! costs a submission and a completion on every `put_idle` plus a cancel and its completion on
//! every `take_idle` (monoio cancels a dropped op asynchronously: the connection may not carry
//! a request, nor its fd be closed and reused, until the cancel has completed), and still
//! leaves a window between a completion and its reap. The peek reads the kernel's state at
//! the moment of reuse. Bytes that arrive after it are indistinguishable from the answer to
//! the new request: no HTTP/1.1 client can close that window, so connections whose responses
//! invite a late body (after HEAD, a 204 announcing one) are not pooled at all.
//!
//! TLS connections (`Transport::Tls`) are pooled the same way. Their check is one
//! non-blocking `recv` through rustls instead of the peek (`TlsStream::absorb`): TLS 1.3
//! servers send records that carry no data at any time (session tickets, key updates), and
//! those keep the connection; decrypted data, close_notify, EOF or a TLS error drop it.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::config::{Upstream, UpstreamProtocol};
use crate::tls::stream::Absorbed;
use crate::tls::transport::Transport;
use crate::tls::upstream::UpstreamTls;
use crate::upstream_h2::H2Pool;

/// A connection to one target, with its reusable read buffer.
pub struct UpConn {
    pub stream: Transport,
    /// Read buffer; empty whenever the connection sits in the pool.
    pub buf: Vec<u8>,
    pub target: usize,
    /// Came out of the pool (so it may have been closed by the upstream meanwhile).
    pub reused: bool,
}

struct Idle {
    conn: UpConn,
    since: Instant,
}

pub struct TargetState {
    pub addr: SocketAddr,
    /// `addr` as text, for the Host header when the client's is not preserved.
    pub label: String,
    weight: i64,
    current: Cell<i64>,
    down_until: Cell<Option<Instant>>,
    idle: RefCell<VecDeque<Idle>>,
    /// With TLS: the name verified in this target's certificate and sent as SNI.
    pub server_name: Option<ServerName<'static>>,
    /// HTTP/2 connections (upstreams with `protocol = "http2"`).
    pub h2: H2Pool,
}

/// An upstream's TLS on this worker: the compiled settings and this worker's client config
/// (its own session store).
pub struct WorkerUpstreamTls {
    pub settings: Arc<UpstreamTls>,
    pub config: Arc<rustls::ClientConfig>,
}

pub struct UpstreamState {
    pub name: String,
    pub targets: Vec<TargetState>,
    max_idle: usize,
    idle_timeout: Duration,
    backoff: Duration,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub tls: Option<WorkerUpstreamTls>,
    pub protocol: UpstreamProtocol,
}

impl UpstreamState {
    /// Builds state for `u`, taking idle connections and back-off from `old` where the
    /// upstream name and target address are unchanged. Idle connections stay only if they
    /// were made under the same TLS settings (plain stays plain; a changed CA, name or client
    /// certificate starts over).
    pub fn new(u: &Upstream, old: Option<&UpstreamState>) -> UpstreamState {
        let same_tls =
            old.is_some_and(|o| tls_identity(&o.tls) == u.tls.as_ref().map(|t| t.identity));
        let same_protocol = old.is_some_and(|o| o.protocol == u.protocol);
        let tls = u.tls.as_ref().map(|t| {
            let prev = old
                .and_then(|o| o.tls.as_ref())
                .map(|w| (&*w.settings, &*w.config));
            WorkerUpstreamTls {
                settings: t.clone(),
                config: t.worker_config(prev),
            }
        });
        let targets = u
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let prev = old.and_then(|o| o.targets.iter().find(|p| p.addr == t.addr));
                let server_name = u.tls.as_ref().and_then(|s| s.names.get(i).cloned());
                let prev_name = prev.and_then(|p| p.server_name.as_ref());
                // Connections of the other protocol are never carried over: nothing would
                // take them again.
                let keep_idle = same_tls && same_protocol && prev_name == server_name.as_ref();
                let h2 = H2Pool::default();
                if let Some(p) = prev.filter(|_| keep_idle) {
                    h2.take_from(&p.h2);
                }
                TargetState {
                    addr: t.addr,
                    label: t.addr.to_string(),
                    weight: i64::from(t.weight),
                    current: Cell::new(0),
                    down_until: Cell::new(prev.and_then(|p| p.down_until.get())),
                    idle: RefCell::new(
                        prev.filter(|_| keep_idle)
                            .map(|p| p.idle.take())
                            .unwrap_or_default(),
                    ),
                    server_name,
                    h2,
                }
            })
            .collect();
        UpstreamState {
            name: u.name.clone(),
            targets,
            max_idle: u.max_idle,
            idle_timeout: u.idle_timeout,
            backoff: u.backoff,
            connect_timeout: u.connect_timeout,
            response_timeout: u.response_timeout,
            tls,
            protocol: u.protocol,
        }
    }

    /// The upstream's `max_idle` (HTTP/2: the cap on connections per target).
    pub fn max_idle(&self) -> usize {
        self.max_idle
    }

    /// How long an idle connection is kept.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// Smooth weighted round-robin (each pick adds every weight to its counter, takes the
    /// largest, subtracts the total) over targets that are not backing off and not in
    /// `tried` (bit i = target i already failed for this request).
    pub fn pick(&self, now: Instant, tried: u64) -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, t) in self.targets.iter().enumerate() {
            if i < 64 && tried & (1 << i) != 0 {
                continue;
            }
            if let Some(until) = t.down_until.get() {
                if until > now {
                    continue;
                }
                t.down_until.set(None);
            }
            total += t.weight;
            t.current.set(t.current.get() + t.weight);
            if best.is_none_or(|b| t.current.get() > self.targets[b].current.get()) {
                best = Some(i);
            }
        }
        let b = best?;
        let t = &self.targets[b];
        t.current.set(t.current.get() - total);
        Some(b)
    }

    /// Marks a target as refusing connections for the back-off period and drops its idle pool.
    pub fn mark_down(&self, target: usize, now: Instant) {
        if let Some(t) = self.targets.get(target) {
            t.down_until.set(Some(now + self.backoff));
            t.idle.borrow_mut().clear();
            t.h2.clear();
        }
    }

    /// Newest idle connection to `target` that has not outlived the idle timeout and has
    /// nothing to read (see the module header: one `recv(MSG_PEEK)` per reuse).
    pub fn take_idle(&self, target: usize, now: Instant) -> Option<UpConn> {
        let t = self.targets.get(target)?;
        let mut idle = t.idle.borrow_mut();
        while let Some(entry) = idle.pop_back() {
            if now.duration_since(entry.since) < self.idle_timeout {
                // Closed by the upstream meanwhile (FIN or RST already here) or holding bytes
                // nobody asked for: dropped, never handed to a request.
                let mut conn = entry.conn;
                if !idle_conn_open(&mut conn.stream) {
                    continue;
                }
                conn.reused = true;
                return Some(conn);
            }
            // Everything older is staler still.
            idle.clear();
        }
        None
    }

    /// Returns a connection whose last exchange completed cleanly.
    pub fn put_idle(&self, mut conn: UpConn, now: Instant) {
        if self.max_idle == 0 || !conn.buf.is_empty() || conn.stream.has_buffered() {
            return;
        }
        if let Transport::Tls(t) = &mut conn.stream {
            t.trim();
        }
        if let Some(t) = self.targets.get(conn.target) {
            let mut idle = t.idle.borrow_mut();
            if idle.len() >= self.max_idle {
                idle.pop_front();
            }
            idle.push_back(Idle { conn, since: now });
        }
    }

    /// Drops every idle connection to `target` (after one turned out to be stale, its
    /// siblings probably are too: the upstream likely restarted).
    pub fn drop_idle(&self, target: usize) {
        if let Some(t) = self.targets.get(target) {
            t.idle.borrow_mut().clear();
        }
    }
}

fn tls_identity(t: &Option<WorkerUpstreamTls>) -> Option<u64> {
    t.as_ref().map(|w| w.settings.identity)
}

/// True if an idle pooled connection still looks open: nothing to read (no EOF, no error, no
/// unsolicited bytes). Pooled connections have no I/O in flight, so the peek never races the
/// runtime. Over TLS, bytes that arrived while idle may be records that carry no data (TLS
/// 1.3 session tickets, key updates): they are taken through rustls without waiting, and the
/// connection is dropped only if they decrypt to data, end the session or are not valid TLS.
fn idle_conn_open(s: &mut Transport) -> bool {
    match s {
        Transport::Plain(t) => {
            use std::os::fd::AsRawFd;
            crate::io::peek(t.as_raw_fd()) == crate::io::Peeked::Empty
        }
        // One non-blocking recv, as the peek: nothing there, or only records without data.
        Transport::Tls(t) => !t.has_buffered() && t.absorb() == Absorbed::Quiet,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Target;

    fn upstream(weights: &[u32]) -> Upstream {
        Upstream {
            name: "u".into(),
            targets: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Target {
                    addr: format!("127.0.0.1:{}", 1000 + i).parse().unwrap(),
                    label: String::new(),
                    weight: w,
                })
                .collect(),
            max_idle: 4,
            idle_timeout: Duration::from_secs(60),
            backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            response_timeout: Duration::from_secs(1),
            tls: None,
            protocol: Default::default(),
        }
    }

    #[test]
    fn round_robin_is_even() {
        let s = UpstreamState::new(&upstream(&[1, 1, 1]), None);
        let now = Instant::now();
        let picks: Vec<_> = (0..6).map(|_| s.pick(now, 0).unwrap()).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn weighted_round_robin_is_smooth_and_proportional() {
        let s = UpstreamState::new(&upstream(&[5, 1, 1]), None);
        let now = Instant::now();
        let picks: Vec<_> = (0..7).map(|_| s.pick(now, 0).unwrap()).collect();
        assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 5);
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn backoff_skips_then_recovers() {
        let s = UpstreamState::new(&upstream(&[1, 1]), None);
        let now = Instant::now();
        s.mark_down(0, now);
        for _ in 0..4 {
            assert_eq!(s.pick(now, 0), Some(1));
        }
        assert_eq!(s.pick(now, 0b10), None);
        let later = now + Duration::from_secs(6);
        let picks: Vec<_> = (0..4).map(|_| s.pick(later, 0).unwrap()).collect();
        assert!(picks.contains(&0));
    }
}

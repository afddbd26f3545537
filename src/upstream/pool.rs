//! The HTTP/1.1 keep-alive pool of one worker: taking and returning idle connections.
//!
//! Pool reuse rule: a pooled connection carries another request only if, at the moment it is
//! taken, it has no unread byte, no pending error and no EOF. Bytes an upstream sent after the
//! response had ended (a stray response after a 204, a body after a HEAD) would otherwise be
//! read as the answer to the next, unrelated client's request. `put_idle` refuses a
//! connection whose read buffer is not empty; `take_idle` checks the socket itself on every
//! reuse with a zero-timeout `poll`, the only system call on the fast path. One call per reuse
//! cost 2–6 % of the gateway's CPU on a VM whose kernel entry is costly, so `liveness` shares
//! it: one call sweeps the pool's newest idle sockets, and a quiet answer is trusted until the
//! worker's current turn ends (every connection taken in a turn is covered by a look taken in
//! that turn, before its request is queued; see loadtest/RESULTS.md). The alternative, an
//! io_uring poll or recv posted while the connection idles, costs a submission and a
//! completion on every `put_idle` plus a cancel and its completion on every `take_idle`
//! (monoio cancels a dropped op asynchronously: the connection may not carry a request, nor
//! its fd be closed and reused, until the cancel has completed), and still leaves a window
//! between a completion and its reap. Posting the response's first read before the request's
//! write and checking which completed first (io_uring posts them in order) was built and
//! measured: no system call, but the early read always arms a poll, which costs as much here
//! (loadtest/RESULTS.md, "by completion order"). The poll reads the kernel's state in the
//! turn that sends. Bytes that arrive after it are indistinguishable
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
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::liveness::{self, Seen};
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
    /// What the last sweep said of it (plain TCP only; see `liveness`).
    seen: Seen,
}

/// One target's idle HTTP/1.1 connections on this worker, oldest first.
#[derive(Default)]
pub struct IdlePool {
    idle: RefCell<VecDeque<Idle>>,
}

impl IdlePool {
    /// Newest idle connection that has not outlived `idle_timeout` and has nothing to read
    /// (see the module header: checked on every reuse).
    pub fn take(&self, now: Instant, idle_timeout: Duration) -> Option<UpConn> {
        let mut idle = self.idle.borrow_mut();
        loop {
            let entry = idle.back()?;
            if now.duration_since(entry.since) >= idle_timeout {
                // Everything older is staler still.
                idle.clear();
                return None;
            }
            if matches!(entry.conn.stream, Transport::Plain(_)) && !entry.seen.claim() {
                // Connections given back in this turn sit unchecked on top of the ones this
                // turn's sweep found quiet: the newest of those goes out without a new look.
                if let Some(i) = trusted_below(&idle) {
                    if now.duration_since(idle[i].since) >= idle_timeout {
                        // It and everything older are past their idle timeout.
                        idle.drain(..=i);
                        continue;
                    }
                    liveness::count_take();
                    let mut conn = idle.remove(i)?.conn;
                    conn.reused = true;
                    return Some(conn);
                }
                // Stamps the newest idle sockets (this one first) or drops them from the pool.
                sweep(&mut idle);
                continue;
            }
            let mut conn = idle.pop_back()?.conn;
            // Over TLS: closed by the upstream meanwhile or holding data nobody asked for:
            // dropped, never handed to a request.
            if let Transport::Tls(t) = &mut conn.stream {
                if t.has_buffered() || t.absorb() != Absorbed::Quiet {
                    continue;
                }
            }
            conn.reused = true;
            return Some(conn);
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
        idle.push_back(Idle {
            conn,
            since: now,
            seen: Seen::Unchecked,
        });
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

/// How far below the newest idle connection `take` looks for one stamped quiet in the open
/// turn before it sweeps again (a turn gives back about as many connections as it takes).
const TRUSTED_SCAN: usize = 64;

/// The index of the newest idle connection stamped quiet in the turn still open, among the
/// `TRUSTED_SCAN` newest. Without this, a connection given back between two takes of one turn
/// cost the next take a `poll` of its own (with the old sizing, 2–3 sweeps per loop turn
/// under rwload; loadtest/RESULTS.md, "One poll per loop turn").
fn trusted_below(idle: &VecDeque<Idle>) -> Option<usize> {
    let turn = liveness::open_turn_number()?;
    let from_back = idle
        .iter()
        .rev()
        .take(TRUSTED_SCAN)
        .position(|e| e.seen == Seen::Quiet(turn))?;
    Some(idle.len() - 1 - from_back)
}

/// One `liveness::sweep` over the newest plain idle connections not yet trusted in this turn
/// (the newest first): quiet ones are stamped with the turn, the others (closed by the upstream
/// meanwhile, FIN or RST already here, or holding bytes nobody asked for) leave the pool.
fn sweep(idle: &mut VecDeque<Idle>) {
    // Plain and not yet looked at in `turn` (the turn is open while the sweep runs).
    fn due(e: &Idle, turn: u64) -> Option<RawFd> {
        match &e.conn.stream {
            Transport::Plain(t) if e.seen != Seen::Quiet(turn) => Some(t.as_raw_fd()),
            _ => None,
        }
    }
    let answers = liveness::sweep(|fds, size, turn| {
        let newest = idle.iter().rev().filter_map(|e| due(e, turn));
        fds.extend(newest.take(size).map(liveness::pollfd));
    });
    // The same entries in the same order: none was stamped in between.
    let turn = answers.turn;
    let mut busy = false;
    let newest = idle.iter_mut().rev().filter(|e| due(e, turn).is_some());
    for (e, &quiet) in newest.zip(answers.quiet()) {
        e.seen = if quiet { Seen::Quiet(turn) } else { Seen::Busy };
        busy |= !quiet;
    }
    if busy {
        idle.retain(|e| e.seen != Seen::Busy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const AGES: Duration = Duration::from_secs(60);

    fn pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    fn rt() -> monoio::Runtime<monoio::LegacyDriver> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap()
    }

    /// An idle pooled connection over `s` (inside a runtime).
    fn idle(pool: &IdlePool, s: std::net::TcpStream) -> RawFd {
        let fd = s.as_raw_fd();
        let conn = UpConn {
            stream: Transport::Plain(monoio::net::TcpStream::from_std(s).unwrap()),
            buf: Vec::new(),
            target: 0,
            reused: false,
            slot: None,
        };
        pool.put(conn, Instant::now(), 16);
        fd
    }

    fn fd_of(c: &UpConn) -> RawFd {
        match &c.stream {
            Transport::Plain(t) => t.as_raw_fd(),
            Transport::Tls(_) => unreachable!(),
        }
    }

    /// Runs a turn that takes `n` connections (so the next turn's first sweep looks at `n`
    /// sockets) and ends it. Returns the peers, to be kept open.
    async fn turn_that_took(pool: &IdlePool, n: usize) -> Vec<std::net::TcpStream> {
        let mut peers = Vec::new();
        for _ in 0..n {
            let (s, peer) = pair();
            idle(pool, s);
            peers.push(peer);
        }
        let mut taken = 0;
        while pool.take(Instant::now(), AGES).is_some() {
            taken += 1;
        }
        assert_eq!(taken, n);
        // The turn ends: the marker runs before this spawned task.
        monoio::spawn(async {}).await;
        peers
    }

    /// Four idle connections, one holding a byte its upstream sent unasked. After a turn that
    /// took four connections (so a sweep looks at four sockets), three takes in one turn get
    /// the three quiet ones from a single poll, and the fourth finds the pool empty (the dirty
    /// one was dropped, never handed out).
    #[test]
    fn one_sweep_covers_every_take_in_a_turn() {
        let (q1, _p1) = pair();
        let (dirty, mut pd) = pair();
        let (q2, _p2) = pair();
        let (q3, _p3) = pair();
        pd.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        rt().block_on(async {
            let pool = IdlePool::default();
            let _peers = turn_that_took(&pool, 4).await;

            let quiet = [idle(&pool, q1), 0, 0];
            let _ = idle(&pool, dirty);
            let quiet = [quiet[0], idle(&pool, q2), idle(&pool, q3)];
            let before = liveness::polls();
            let mut got = Vec::new();
            while let Some(c) = pool.take(Instant::now(), AGES) {
                assert!(c.reused);
                got.push(fd_of(&c));
            }
            assert_eq!(
                got,
                vec![quiet[2], quiet[1], quiet[0]],
                "newest first, dirty skipped"
            );
            assert_eq!(liveness::polls() - before, 1, "one poll for the turn");
        });
    }

    /// A connection given back in the middle of a turn sits unchecked on top of the pool. The
    /// next take of that turn hands out the newest connection the turn's sweep found quiet
    /// instead of polling again; the one given back is looked at by a later sweep before it
    /// goes out.
    #[test]
    fn a_connection_given_back_mid_turn_costs_no_second_poll() {
        let (q1, _p1) = pair();
        let (q2, _p2) = pair();
        let (back, mut pb) = pair();
        rt().block_on(async {
            let pool = IdlePool::default();
            let _peers = turn_that_took(&pool, 2).await;

            let q1 = idle(&pool, q1);
            let q2 = idle(&pool, q2);
            let before = liveness::polls();
            let first = pool.take(Instant::now(), AGES).expect("quiet");
            assert_eq!(fd_of(&first), q2);
            // Given back mid-turn, and then its upstream sends a byte nobody asked for.
            let back = idle(&pool, back);
            pb.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
            let second = pool.take(Instant::now(), AGES).expect("quiet");
            assert_eq!(
                fd_of(&second),
                q1,
                "the swept one, not the unchecked one on top"
            );
            assert_eq!(liveness::polls() - before, 1, "no second poll in the turn");
            // Nothing swept is left: the next take looks, and drops the dirty one.
            assert!(
                pool.take(Instant::now(), AGES).is_none(),
                "{back} holds bytes"
            );
            assert_eq!(liveness::polls() - before, 2);
        });
    }

    /// After a turn that took one connection, a turn that takes eight sweeps in growing steps
    /// (one socket, then two, then six), not once per take.
    #[test]
    fn a_busier_turn_than_the_last_sweeps_in_growing_steps() {
        let pairs: Vec<_> = (0..8).map(|_| pair()).collect();
        rt().block_on(async {
            let pool = IdlePool::default();
            let _warm = turn_that_took(&pool, 1).await;
            let mut peers = Vec::new();
            for (s, peer) in pairs {
                idle(&pool, s);
                peers.push(peer);
            }
            let before = liveness::polls();
            let mut n = 0;
            while pool.take(Instant::now(), AGES).is_some() {
                n += 1;
            }
            assert_eq!(n, 8);
            assert_eq!(
                liveness::polls() - before,
                3,
                "sweeps of 1, 2 and 6 sockets"
            );
        });
    }

    /// A quiet answer is trusted only in the turn that got it: a byte that arrives once the
    /// turn is over is seen by the next take, which sweeps again and drops the connection.
    #[test]
    fn a_later_turn_looks_again() {
        let (a, _pa) = pair();
        let (b, mut pb) = pair();
        rt().block_on(async {
            let pool = IdlePool::default();
            let b_fd = idle(&pool, b);
            let a_fd = idle(&pool, a);
            let before = liveness::polls();
            let first = pool.take(Instant::now(), AGES).expect("quiet");
            assert_eq!(fd_of(&first), a_fd);
            // Both were swept; let the turn end (the marker runs before this spawned task).
            monoio::spawn(async {}).await;
            pb.write_all(b"stray").unwrap();
            assert!(
                pool.take(Instant::now(), AGES).is_none(),
                "{b_fd} holds a stray byte"
            );
            assert_eq!(liveness::polls() - before, 2, "a new turn, a new look");
        });
    }

    /// A runtime's last turn ends with it (monoio runs the queued marker before `block_on`
    /// returns): the next runtime on the thread opens a turn of its own and checks again.
    #[test]
    fn a_later_runtime_on_the_thread_checks_again() {
        let (a, _pa) = pair();
        rt().block_on(async {
            let pool = IdlePool::default();
            idle(&pool, a);
            assert!(pool.take(Instant::now(), AGES).is_some());
            assert!(liveness::turn_open());
        });
        assert!(!liveness::turn_open());
        let (b, mut pb) = pair();
        let (c, _pc) = pair();
        pb.write_all(b"x").unwrap();
        rt().block_on(async {
            let pool = IdlePool::default();
            idle(&pool, b);
            assert!(pool.take(Instant::now(), AGES).is_none());
            idle(&pool, c);
            assert!(pool.take(Instant::now(), AGES).is_some());
        });
    }
}

//! Per-worker HTTP/2 connections to one upstream target, shared by many exchanges.
//!
//! A target's `H2Pool` holds its connections. An exchange claims a stream slot on the oldest
//! ready connection whose open streams are below the peer's SETTINGS_MAX_CONCURRENT_STREAMS;
//! when every connection is full, another one is opened, up to the pool's cap (the upstream's
//! `max_idle`, at least 1); past the cap the least loaded connection takes the stream and h2
//! queues it until one of its streams ends. While a connection is being set up, other
//! exchanges wait for it instead of opening their own (no thundering herd on a cold start).
//!
//! A connection is usable ("ready") only once the peer's SETTINGS have been applied: after
//! the h2 handshake the opener sends a PING and waits for its answer, which a server sends
//! after its SETTINGS (RFC 9113 §3.4: the server preface is its first frame). Until then the
//! peer's stream limit is unknown.
//!
//! Each connection's driver (`h2::client::Connection`) runs as its own task on this worker.
//! When it ends (GOAWAY, reset, EOF, error) the connection is marked closed and leaves the pool
//! at the next pick. What the upstream sends passes the HTTP/2 flood guard first
//! (`h2flood::Guarded::upstream`): an upstream that floods control or empty frames has its
//! connection closed (its streams fail with 502), a warning logged, and the opener's
//! `OnFlood` called (it counts the close). A connection with no open stream for the
//! upstream's `idle_timeout` is closed by its driver (its handle is dropped, h2 ends it).
//!
//! Invariants: everything here is `!Send`, owned by one worker; a stream slot is released
//! exactly once (`StreamClaim` drop).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::client::SendRequest;

use crate::exchange::error::{ErrorKind, ProxyError};
use crate::h2flood::{Flood, Guarded};
use crate::tls::poll::PollStream;

/// The upstream side of a connection, behind the flood guard.
type Io = Guarded<PollStream>;

/// Called once when a connection is closed for a flood (the opener counts it).
pub type OnFlood = fn(Flood);

/// Per-stream receive window the gateway grants an upstream (bounds memory per stream).
const STREAM_WINDOW: u32 = 256 * 1024;
/// Receive window for a whole upstream connection: room for 32 streams' windows, so a few
/// slow clients (whose streams hold their window until they read) do not stall the other
/// streams sharing the connection.
const CONNECTION_WINDOW: u32 = 32 * STREAM_WINDOW;
/// Largest response header list accepted from an upstream.
const MAX_HEADER_LIST: u32 = 64 * 1024;
/// Most bytes h2 buffers per stream for sending.
const SEND_BUFFER: usize = 64 * 1024;
/// How often a driver looks at its idle clock.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Most connections per target per worker when `max_idle` says more.
const MAX_CONNS: usize = 64;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// TCP, TLS or the h2 handshake (and the SETTINGS round trip) in progress.
    Connecting,
    Ready,
    Closed,
}

/// One HTTP/2 connection to a target.
pub struct H2Conn {
    send: RefCell<Option<SendRequest<Bytes>>>,
    state: Cell<State>,
    /// Streams claimed and not yet released.
    in_flight: Cell<usize>,
    /// Since when no stream has been open.
    idle_since: Cell<Instant>,
    /// Notified when the connection becomes ready or fails to.
    settled: event_listener::Event,
    /// The upstream's connection count this connection holds (`max_connections`), given
    /// back when it closes.
    slot: RefCell<Option<crate::resilience::ConnSlot>>,
}

impl H2Conn {
    fn new() -> H2Conn {
        H2Conn {
            send: RefCell::new(None),
            state: Cell::new(State::Connecting),
            in_flight: Cell::new(0),
            idle_since: Cell::new(Instant::now()),
            settled: event_listener::Event::new(),
            slot: RefCell::new(None),
        }
    }

    /// Streams the peer allows at once (usize::MAX when it set no limit).
    fn limit(&self) -> usize {
        self.send
            .borrow()
            .as_ref()
            .map_or(0, |s| s.current_max_send_streams())
    }

    fn is_closed(&self) -> bool {
        self.state.get() == State::Closed
    }

    /// Marks the connection closed and drops its handle (h2 then ends it once its streams are
    /// done).
    pub fn close(&self) {
        self.state.set(State::Closed);
        self.send.borrow_mut().take();
        self.slot.borrow_mut().take();
        self.settled.notify(usize::MAX);
    }

    /// Takes a stream slot; `None` if the connection has closed meanwhile.
    fn claim(self: &Rc<Self>, fresh: bool) -> Option<StreamClaim> {
        let send = self.send.borrow().clone()?;
        self.in_flight.set(self.in_flight.get() + 1);
        Some(StreamClaim {
            conn: self.clone(),
            send,
            reused: !fresh,
        })
    }

    /// Waits until the connection is ready or failed (or `deadline`).
    pub async fn wait_settled(&self, deadline: Instant) {
        if self.state.get() != State::Connecting {
            return;
        }
        let listener = self.settled.listen();
        if self.state.get() != State::Connecting {
            return;
        }
        let _ = monoio::time::timeout_at(deadline.into(), listener).await;
    }
}

/// A stream slot on a connection, held for the whole exchange.
pub struct StreamClaim {
    conn: Rc<H2Conn>,
    /// This exchange's own handle (its own pending-open slot in h2).
    pub send: SendRequest<Bytes>,
    /// The connection was already open (it may have died meanwhile: retrying is safe when
    /// sending fails before the request left).
    pub reused: bool,
}

impl StreamClaim {
    /// The connection turned out unusable: nobody else gets it.
    pub fn mark_dead(&self) {
        self.conn.close();
    }

    /// Gives the connection the connection slot it holds until it closes.
    pub fn hold_slot(&self, slot: crate::resilience::ConnSlot) {
        *self.conn.slot.borrow_mut() = Some(slot);
    }
}

impl Drop for StreamClaim {
    fn drop(&mut self) {
        let n = self.conn.in_flight.get().saturating_sub(1);
        self.conn.in_flight.set(n);
        if n == 0 {
            self.conn.idle_since.set(Instant::now());
        }
    }
}

/// What `H2Pool::pick` decided.
pub enum Pick {
    /// A slot on a ready connection.
    Use(StreamClaim),
    /// Another exchange is setting a connection up: wait for it, then pick again.
    Wait(Rc<H2Conn>),
    /// Open this new connection (already in the pool, connecting) with `establish`.
    Open(Opening),
}

/// A connection being set up by one exchange. Dropped before it is ready (a failure, or the
/// exchange itself dropped mid-connect), it closes, so waiters never wait on an orphan.
pub struct Opening(Rc<H2Conn>);

impl Drop for Opening {
    fn drop(&mut self) {
        if self.0.state.get() == State::Connecting {
            self.0.close();
        }
    }
}

impl Opening {
    fn new(conns: &mut Vec<Rc<H2Conn>>) -> Opening {
        let c = Rc::new(H2Conn::new());
        conns.push(c.clone());
        Opening(c)
    }
}

/// One target's HTTP/2 connections on this worker.
#[derive(Default)]
pub struct H2Pool {
    conns: RefCell<Vec<Rc<H2Conn>>>,
}

impl H2Pool {
    /// Chooses a connection for one more stream (see the module header). `max_idle` is the
    /// upstream's setting, which caps the connections per target.
    pub fn pick(&self, max_idle: usize) -> Pick {
        let cap = max_idle.clamp(1, MAX_CONNS);
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.is_closed());
        let free = conns
            .iter()
            .find(|c| c.state.get() == State::Ready && c.in_flight.get() < c.limit());
        if let Some(claim) = free.and_then(|c| c.claim(false)) {
            return Pick::Use(claim);
        }
        if let Some(c) = conns.iter().find(|c| c.state.get() == State::Connecting) {
            return Pick::Wait(c.clone());
        }
        if conns.len() < cap {
            return Pick::Open(Opening::new(&mut conns));
        }
        // Every connection is full and no more may open: h2 queues the stream on the least
        // loaded one until a slot frees.
        let least = conns.iter().min_by_key(|c| c.in_flight.get()).cloned();
        match least.and_then(|c| c.claim(false)) {
            Some(claim) => Pick::Use(claim),
            None => Pick::Open(Opening::new(&mut conns)),
        }
    }

    /// Closes and forgets every connection (the target refused or the upstream changed).
    pub fn clear(&self) {
        for c in self.conns.borrow_mut().drain(..) {
            c.close();
        }
    }

    /// Open (or opening) connections, for tests and stats.
    pub fn len(&self) -> usize {
        self.conns
            .borrow()
            .iter()
            .filter(|c| !c.is_closed())
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Moves `old`'s connections here (a reload that kept this target).
    pub fn take_from(&self, old: &H2Pool) {
        let mut moved = old.conns.take();
        self.conns.borrow_mut().append(&mut moved);
    }
}

/// Runs the h2 handshake on `io` for `conn` (which `pick` returned as `Pick::Open`), spawns
/// its driver and waits for the peer's SETTINGS (a PING round trip), all by `deadline`.
/// On success the connection is ready and a slot on it is claimed for the caller.
pub async fn establish(
    opening: Opening,
    io: PollStream,
    guard: Guard,
    idle_timeout: Duration,
    deadline: Instant,
) -> Result<StreamClaim, ProxyError> {
    let conn = &opening.0;
    if let Err(e) = handshake(conn, io, guard, idle_timeout, deadline).await {
        conn.close();
        return Err(e);
    }
    conn.state.set(State::Ready);
    conn.settled.notify(usize::MAX);
    conn.claim(true)
        .ok_or(ProxyError::new(ErrorKind::UpstreamClosed))
}

async fn handshake(
    conn: &Rc<H2Conn>,
    io: PollStream,
    guard: Guard,
    idle_timeout: Duration,
    deadline: Instant,
) -> Result<(), ProxyError> {
    let io = Guarded::upstream(io);
    let tripped = io.tripped.clone();
    let mut b = h2::client::Builder::new();
    b.enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(SEND_BUFFER);
    let timeout = ProxyError::new(ErrorKind::UpstreamConnectTimeout);
    let (send, mut driver) = match monoio::time::timeout_at(deadline.into(), b.handshake(io)).await
    {
        Ok(Ok(pair)) => pair,
        Ok(Err(_)) => return Err(ProxyError::new(ErrorKind::UpstreamBadResponse)),
        Err(_) => return Err(timeout),
    };
    let mut ping = driver.ping_pong();
    *conn.send.borrow_mut() = Some(send);
    monoio::spawn(drive(
        driver,
        tripped,
        guard,
        Rc::downgrade(conn),
        idle_timeout,
    ));
    let Some(ping) = ping.as_mut() else {
        return Ok(());
    };
    match monoio::time::timeout_at(deadline.into(), ping.ping(h2::Ping::opaque())).await {
        Ok(Ok(_)) => Ok(()),
        // Not an HTTP/2 server (it answered the preface with something else) or it closed.
        Ok(Err(_)) => Err(ProxyError::new(ErrorKind::UpstreamBadResponse)),
        Err(_) => Err(timeout),
    }
}

/// What the opener tells a new connection's driver for a flood: whom to name in the log,
/// and whom to tell.
pub struct Guard {
    /// `upstream NAME target ADDR`.
    peer: String,
    on_flood: OnFlood,
}

impl Guard {
    pub fn new(peer: String, on_flood: OnFlood) -> Guard {
        Guard { peer, on_flood }
    }
}

/// How a connection's driver stopped.
enum Ended {
    Codec(Result<(), h2::Error>),
    Flood(Flood),
}

/// Drives one connection until it ends or floods, closing it after `idle_timeout` without
/// streams.
async fn drive(
    mut driver: h2::client::Connection<Io, Bytes>,
    tripped: Rc<Cell<Option<Flood>>>,
    guard: Guard,
    conn: Weak<H2Conn>,
    idle_timeout: Duration,
) {
    loop {
        // The guard wakes this task when it trips (its read stays pending from then on).
        let step = poll_fn(|cx| match tripped.get() {
            Some(f) => std::task::Poll::Ready(Ended::Flood(f)),
            None => {
                std::future::Future::poll(std::pin::Pin::new(&mut driver), cx).map(Ended::Codec)
            }
        });
        let ended = monoio::select! {
            r = step => Some(r),
            _ = monoio::time::sleep(IDLE_TICK) => None,
        };
        match ended {
            Some(Ended::Codec(Err(e))) => {
                if !e.is_go_away() || e.reason() != Some(h2::Reason::NO_ERROR) {
                    crate::log::info(&format!("{}: HTTP/2 connection ended: {e}", guard.peer));
                }
                break;
            }
            Some(Ended::Codec(Ok(()))) => break,
            Some(Ended::Flood(f)) => {
                crate::log::warn(&format!(
                    "{}: HTTP/2 connection closed: the upstream overspent its {} budget (a flood)",
                    guard.peer,
                    f.as_str()
                ));
                (guard.on_flood)(f);
                break;
            }
            None => {}
        }
        if let Some(c) = conn.upgrade() {
            let idle = c.in_flight.get() == 0 && c.idle_since.get().elapsed() >= idle_timeout;
            if idle && c.state.get() == State::Ready {
                c.close();
            }
        }
    }
    if let Some(c) = conn.upgrade() {
        c.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cold_pool_opens_one_connection_and_others_wait_for_it() {
        let pool = H2Pool::default();
        let Pick::Open(first) = pool.pick(4) else {
            panic!("a cold pool opens a connection");
        };
        assert!(matches!(pool.pick(4), Pick::Wait(c) if Rc::ptr_eq(&c, &first.0)));
        // The opener gave up (or was dropped mid-connect): its connection closes with it.
        drop(first);
        let Pick::Open(second) = pool.pick(4) else {
            panic!("a failed connection is replaced");
        };
        assert_eq!(pool.len(), 1);
        drop(second);
        assert!(pool.is_empty());
    }

    #[test]
    fn closed_connections_leave_the_pool() {
        let pool = H2Pool::default();
        let Pick::Open(c) = pool.pick(1) else {
            panic!("a cold pool opens a connection")
        };
        assert_eq!(pool.len(), 1);
        pool.clear();
        assert!(pool.is_empty());
        drop(c);
    }
}

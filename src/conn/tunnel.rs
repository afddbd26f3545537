//! WebSocket tunnels: after the upstream answered 101, relay bytes both ways until both
//! directions have closed, or until no byte moved either way for `timeouts.tunnel_idle`.
//!
//! Idleness is tracked with one timestamp the two relay halves update after each read; one
//! watchdog timer per tunnel sleeps until that timestamp plus the idle limit (re-arming while
//! traffic flows). When it fires, both sockets are shut down so both peers see the close and
//! every pending read or write ends; nothing is cancelled mid-transfer.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use monoio::io::Splitable;

use monoio::net::TcpStream;

use crate::io::write_all;
use crate::tls::transport::Transport;
use crate::upstream::UpConn;

/// Relays bytes both ways after a 101 until both directions have closed or the tunnel idled
/// out. `leftover` is what the client sent after its request head. Returns `true` when it was
/// closed for idleness.
pub async fn tunnel(client: Transport, leftover: Vec<u8>, up: UpConn, idle: Duration) -> bool {
    let mut ups = up.stream;
    if !leftover.is_empty() {
        let mut l = leftover;
        let far = Instant::now() + std::time::Duration::from_secs(30);
        if write_all(&mut ups, &mut l, far).await.is_err() {
            return false;
        }
    }
    match (client, ups) {
        (Transport::Plain(tcp), Transport::Plain(ups)) => tunnel_plain(tcp, ups, idle).await,
        (client, ups) => tunnel_tls(client, ups, idle).await,
    }
}

async fn tunnel_plain(client: TcpStream, ups: TcpStream, idle: Duration) -> bool {
    let fds = [client.as_raw_fd(), ups.as_raw_fd()];
    let last = Cell::new(Instant::now());
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = ups.into_split();
    let a = copy_half(&mut cr, &mut uw, &last);
    let b = copy_half(&mut ur, &mut cw, &last);
    let relay = async { monoio::join!(a, b) };
    let relay = std::pin::pin!(relay);
    let watch = std::pin::pin!(idle_watch(&last, idle));
    let idled = monoio::select! {
        _ = relay => false,
        _ = watch => true,
    };
    if idled {
        for fd in fds {
            // SAFETY: both fds belong to the stream halves still alive in this frame (dropped
            // only when it returns); shutdown does not close them.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }
    idled
}

/// The tunnel when either side speaks TLS. A TLS session cannot be split into two halves
/// that run concurrently, so one loop drives both directions without ever awaiting a read or
/// a write: it moves whatever the sockets take right now (non-blocking `recv`/`send`, rustls's
/// bounded queues), and when nothing moved it waits for whichever readiness would let
/// something move (a side readable while its direction has room, writable while bytes or
/// ciphertext wait for it) or for the idle deadline. A direction stalled by its receiver
/// therefore never stops the other one (an echo server that stops reading until its own
/// writes drain would otherwise deadlock with the gateway), and each direction holds at most
/// `RELAY_BUF` bytes.
async fn tunnel_tls(mut client: Transport, mut ups: Transport, idle: Duration) -> bool {
    let mut c2u = Direction::default();
    let mut u2c = Direction::default();
    let mut last = Instant::now();
    loop {
        let a = c2u.step(&mut client, &mut ups);
        let b = u2c.step(&mut ups, &mut client);
        let (Ok(a), Ok(b)) = (a, b) else {
            return false;
        };
        if c2u.closed && u2c.closed {
            return false;
        }
        if a || b {
            last = Instant::now();
            // A relay that always has bytes to move never awaits: let the worker's other
            // connections run between rounds.
            yield_once().await;
            continue;
        }
        let due = last + idle;
        let woke = {
            let cr = when(c2u.wants_read(), client.tcp().readable(false));
            let uw = when(c2u.wants_write(&ups), ups.tcp().writable(false));
            let ur = when(u2c.wants_read(), ups.tcp().readable(false));
            let cw = when(u2c.wants_write(&client), client.tcp().writable(false));
            monoio::select! {
                _ = cr => true,
                _ = uw => true,
                _ = ur => true,
                _ = cw => true,
                _ = monoio::time::sleep_until(due.into()) => false,
            }
        };
        if !woke {
            return true;
        }
    }
}

/// Returns to the scheduler once, queued behind the worker's other ready tasks.
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

/// Most bytes read from one side and not yet taken by the other, per direction.
const RELAY_BUF: usize = 64 * 1024;

/// One direction of a TLS tunnel: bytes read from its source that its destination has not
/// taken yet.
#[derive(Default)]
struct Direction {
    buf: Vec<u8>,
    /// The source ended (or failed): nothing more is read from it.
    src_ended: bool,
    /// The end was passed on (close_notify or a write shutdown): the direction is done.
    closed: bool,
}

impl Direction {
    fn wants_read(&self) -> bool {
        !self.src_ended && self.buf.len() < RELAY_BUF
    }

    fn wants_write(&self, dst: &Transport) -> bool {
        let tls_pending = matches!(dst, Transport::Tls(t) if t.wants_write());
        !self.closed && (!self.buf.is_empty() || tls_pending || self.src_ended)
    }

    /// Moves what can move now. `Ok(true)` when anything happened; `Err` when either side
    /// failed (the tunnel ends abruptly: a broken source is not passed on as a clean end).
    fn step(&mut self, src: &mut Transport, dst: &mut Transport) -> std::io::Result<bool> {
        if self.closed {
            return Ok(false);
        }
        let mut moved = false;
        if self.wants_read() {
            let room = RELAY_BUF - self.buf.len();
            match try_read(src, &mut self.buf, room)? {
                Some(0) => {
                    self.src_ended = true;
                    moved = true;
                }
                Some(_) => moved = true,
                None => {}
            }
        }
        if !self.buf.is_empty() {
            let n = try_write(dst, &self.buf)?;
            if n > 0 {
                self.buf.drain(..n);
                moved = true;
            }
        } else if let Transport::Tls(t) = dst {
            t.try_flush()?;
        }
        if self.src_ended && self.buf.is_empty() && try_close(dst)? {
            self.closed = true;
            moved = true;
        }
        Ok(moved)
    }
}

/// `fut` when `cond`, else a future that never completes (a `select!` branch switched off).
async fn when<F: std::future::Future>(cond: bool, fut: F) {
    if cond {
        let _ = fut.await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// Takes at most `max` bytes from `s` into `dst` without waiting (see
/// `TlsStream::try_read_plain`): `Some(0)` is the end, `None` nothing yet, `Err` a failure.
fn try_read(s: &mut Transport, dst: &mut Vec<u8>, max: usize) -> std::io::Result<Option<usize>> {
    match s {
        Transport::Tls(t) => t.try_read_plain(dst, max),
        Transport::Plain(tcp) => match crate::io::recv_now(tcp.as_raw_fd(), dst, max) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        },
    }
}

/// Writes what `s` takes of `src` now (possibly nothing).
fn try_write(s: &mut Transport, src: &[u8]) -> std::io::Result<usize> {
    match s {
        Transport::Tls(t) => t.try_write_plain(src),
        Transport::Plain(tcp) => match crate::io::send_now(tcp.as_raw_fd(), src) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            other => other,
        },
    }
}

/// Passes a direction's end on: close_notify on TLS (`false` while it waits to be written),
/// a write shutdown on TCP.
fn try_close(s: &mut Transport) -> std::io::Result<bool> {
    match s {
        Transport::Tls(t) => t.try_close_notify(),
        Transport::Plain(tcp) => {
            // SAFETY: shuts down the write side of a socket this frame owns; the fd stays open.
            unsafe {
                libc::shutdown(tcp.as_raw_fd(), libc::SHUT_WR);
            }
            Ok(true)
        }
    }
}

/// Completes once no relay half has read anything for `idle`.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let due = last.get() + idle;
        if Instant::now() >= due {
            return;
        }
        monoio::time::sleep_until(due.into()).await;
    }
}

pub(super) async fn copy_half<R, W>(r: &mut R, w: &mut W, last: &Cell<Instant>)
where
    R: monoio::io::AsyncReadRent,
    W: monoio::io::AsyncWriteRent,
{
    use monoio::io::AsyncWriteRentExt as _;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        let (res, b) = r.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                last.set(Instant::now());
                let (res, b) = w.write_all(buf).await;
                buf = b;
                if res.is_err() {
                    break;
                }
            }
        }
    }
    let _ = w.shutdown().await;
}
